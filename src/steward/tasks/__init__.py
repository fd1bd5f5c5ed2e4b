"""Tasks and jobs: pre-approved, parameterised actions kept in the desired-state repository,
run on the nodes a PQL query selects, with a result per node. Not part of the change flow."""
