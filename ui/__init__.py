"""The app's user interface, one module per tab; `app.py` assembles them. No model code lives here."""
