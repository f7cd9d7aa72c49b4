"""One module of routes per subject; api/main.py includes them."""
