"""One module per optimizer family; each defines its State, init, step and registry spec."""
