"""The compiler: a loaded repository plus one node's facts → that node's catalog.

Classification, hierarchical data, expressions and templates, resource expansion and
validation, relationships and automatic dependencies, cycle detection, catalog assembly.
"""

from steward.compiler.compile import CompileResult, compile_catalog
from steward.language.errors import (
    ClassificationError,
    CycleError,
    DataError,
    DuplicateResourceError,
    ExpressionError,
    LanguageError,
    ParameterError,
    RelationshipError,
    ResourceError,
    TemplateError,
)

__all__ = [
    "ClassificationError",
    "CompileResult",
    "CycleError",
    "DataError",
    "DuplicateResourceError",
    "ExpressionError",
    "LanguageError",
    "ParameterError",
    "RelationshipError",
    "ResourceError",
    "TemplateError",
    "compile_catalog",
]
