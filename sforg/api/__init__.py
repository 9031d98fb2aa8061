"""The APIs sforg serves, one module each; `sforg.server` routes requests to them."""
