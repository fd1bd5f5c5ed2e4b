"""The desired-state repository format: loading, validation and JSON Schema export.

``load_repository(path)`` parses and pre-compiles a repository once; the compiler
(:mod:`steward.compiler`) turns it into per-node catalogs. The format is documented in
``docs/language.md``.
"""

from steward.language.errors import (
    ClassificationError,
    CycleError,
    DataError,
    DuplicateKeyError,
    DuplicateResourceError,
    ExpressionError,
    LanguageError,
    ParameterError,
    RelationshipError,
    RepositoryError,
    ResourceError,
    TemplateError,
)
from steward.language.repository import Repository, load_repository

__all__ = [
    "ClassificationError",
    "CycleError",
    "DataError",
    "DuplicateKeyError",
    "DuplicateResourceError",
    "ExpressionError",
    "LanguageError",
    "ParameterError",
    "RelationshipError",
    "Repository",
    "RepositoryError",
    "ResourceError",
    "TemplateError",
    "load_repository",
]
