"""The server's moving parts: the scheduler (admission, dispatch, stop, recovery), the executors
that run training, the hub that fans messages out, callbacks, the model store and online predict.
May import protocol and state/; never aiohttp's web layer, and torch only lazily (predict)."""
