"""Change records: proposals against an environment's branch, their states and the analyses
(impact reports, policy verdicts, overrides, validations) recorded against them."""
