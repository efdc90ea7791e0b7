"""Base models: what a model folder holds (files), pulling one from a hub into BASE_MODELS_DIR
(download, with one client per hub), which models the server has (catalog), the downloads the
server runs (manager), and the queued tasks that wait for one (gate). Imports no torch."""
