"""The FastAGI routes: one module, one coroutine, named alike."""
