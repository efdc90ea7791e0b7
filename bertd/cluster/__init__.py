"""Training on other machines: the Celery executor of the API node and the `bertd worker` process of
a GPU box, talking through Redis (Celery carries the jobs; Redis streams carry the messages back).
Only imported when BROKER_URL is set or `bertd worker` runs: `import bertd` never imports Celery."""
