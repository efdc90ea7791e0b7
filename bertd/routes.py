"""The URL table, and nothing else."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bertd import api_files, api_models, api_service, api_tasks, api_ws

DASHBOARD_DIR = Path(__file__).parent / "static"


async def dashboard(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, swagger_ui_dir: Path) -> None:
    app.router.add_get("/", dashboard)
    app.router.add_static("/static", DASHBOARD_DIR)
    app.router.add_get("/api/v1/health", api_service.health)
    app.router.add_get("/metrics", api_service.metrics)
    app.router.add_get("/api/v1/openapi.json", api_service.openapi)
    app.router.add_get("/api/v1/docs", api_service.docs)
    app.router.add_static("/api/v1/docs/assets", swagger_ui_dir)

    app.router.add_post("/api/v1/files", api_files.upload_file)
    app.router.add_get("/api/v1/files", api_files.list_files)
    app.router.add_get("/api/v1/files/{filename}", api_files.get_file)
    app.router.add_delete("/api/v1/files/{filename}", api_files.delete_file)

    app.router.add_post("/api/v1/training/tasks", api_tasks.create_task)
    app.router.add_get("/api/v1/training/tasks", api_tasks.list_tasks)
    app.router.add_get("/api/v1/training/tasks/{task_id}", api_tasks.get_task)
    app.router.add_delete("/api/v1/training/tasks/{task_id}", api_tasks.delete_task)
    app.router.add_post("/api/v1/training/tasks/{task_id}/stop", api_tasks.stop_task)
    app.router.add_get("/api/v1/training/tasks/{task_id}/events", api_tasks.list_events)
    app.router.add_post("/api/v1/training/tasks/{task_id}/predict", api_models.predict)
    app.router.add_get("/api/v1/training/tasks/{task_id}/download", api_models.download)
    app.router.add_get("/api/v1/training/tasks/{task_id}/ws", api_ws.task_stream)
    app.router.add_get("/api/v1/ws", api_ws.all_tasks_stream)
