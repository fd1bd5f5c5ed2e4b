"""Deployments: a merged change rolled out to the nodes it affects, batch by batch, halting
on failure."""
