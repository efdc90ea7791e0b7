"""The URL table, and nothing else."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bertd.api import base_models, files, internal, predictions, service, tasks, tickets, trained_model, workers, ws

DASHBOARD_DIR = Path(__file__).parent.parent / "static"


async def dashboard(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, swagger_ui_dir: Path) -> None:
    app.router.add_get("/", dashboard)
    app.router.add_static("/static", DASHBOARD_DIR)
    app.router.add_get("/api/v1/health", service.health)
    app.router.add_get("/metrics", service.metrics)
    app.router.add_get("/api/v1/openapi.json", service.openapi)
    app.router.add_get("/api/v1/docs", service.docs)
    app.router.add_get("/api/v1/workers", workers.list_workers)
    app.router.add_get("/api/v1/internal/hello", internal.hello)
    app.router.add_get("/api/v1/internal/files/{filename}", internal.get_file)
    app.router.add_get("/api/v1/internal/base-models/{name:.+}", internal.get_base_model)
    app.router.add_put("/api/v1/internal/tasks/{task_id}/model", internal.put_model)
    app.router.add_static("/api/v1/docs/assets", swagger_ui_dir)
    app.router.add_post("/api/v1/tickets", tickets.issue_ticket)

    app.router.add_post("/api/v1/files", files.upload_file)
    app.router.add_get("/api/v1/files", files.list_files)
    app.router.add_post("/api/v1/files/rescan", files.rescan_files)
    # Never "rescan" (no upload has that name: it has no .xlsx/.csv suffix), so that the path
    # /api/v1/files/rescan belongs to one resource and its 405 lists only POST.
    app.router.add_get(r"/api/v1/files/{filename:(?!rescan$)[^/]+}", files.get_file)
    app.router.add_delete(r"/api/v1/files/{filename:(?!rescan$)[^/]+}", files.delete_file)

    app.router.add_get("/api/v1/base-models", base_models.list_base_models)
    app.router.add_post("/api/v1/base-models", base_models.pull_base_model)
    # org/name ids: the slash may come as is or URL-encoded (%2F).
    app.router.add_delete("/api/v1/base-models/{name:.+}", base_models.delete_base_model)

    app.router.add_post("/api/v1/training/tasks", tasks.create_task)
    app.router.add_get("/api/v1/training/tasks", tasks.list_tasks)
    app.router.add_get("/api/v1/training/tasks/{task_id}", tasks.get_task)
    app.router.add_delete("/api/v1/training/tasks/{task_id}", tasks.delete_task)
    app.router.add_post("/api/v1/training/tasks/{task_id}/stop", tasks.stop_task)
    app.router.add_post("/api/v1/training/tasks/{task_id}/pause", tasks.pause_task)
    app.router.add_post("/api/v1/training/tasks/{task_id}/resume", tasks.resume_task)
    app.router.add_get("/api/v1/training/tasks/{task_id}/events", tasks.list_events)
    app.router.add_post("/api/v1/training/tasks/{task_id}/predict", trained_model.predict)
    app.router.add_get("/api/v1/training/tasks/{task_id}/download", trained_model.download)
    app.router.add_get("/api/v1/training/tasks/{task_id}/ws", ws.task_stream)

    jobs = "/api/v1/training/tasks/{task_id}/predictions"
    app.router.add_post(jobs, predictions.create_prediction)
    app.router.add_get(jobs, predictions.list_predictions)
    app.router.add_get(jobs + "/{prediction_id}", predictions.get_prediction)
    app.router.add_delete(jobs + "/{prediction_id}", predictions.delete_prediction)
    app.router.add_post(jobs + "/{prediction_id}/stop", predictions.stop_prediction)
    app.router.add_get(jobs + "/{prediction_id}/download", predictions.download_prediction)
    app.router.add_get(jobs + "/{prediction_id}/ws", ws.prediction_stream)
    app.router.add_get("/api/v1/ws", ws.all_tasks_stream)
