"""HTTP routes, one module per resource; state arrives through :data:`deps.StateDep`."""
