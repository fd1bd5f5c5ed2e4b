"""Impact analysis: which nodes a change affects and what it changes on each (before ->
after), predicted by compiling both sides, and asked of the machines themselves (live)."""
