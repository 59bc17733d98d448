"""The gate's web side: the kiosk page, the officer console and the JSON APIs
(see `gate.web.app.create_app`)."""
