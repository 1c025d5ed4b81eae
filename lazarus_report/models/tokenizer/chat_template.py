"""Chat templates rendered like transformers' ``apply_chat_template``, without importing it: one user
message plus the generation prompt, in jinja2's immutable sandbox (a template comes with the model file)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TEMPLATE_CACHE: dict[str, Any] = {}


def _template_environment() -> Any:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}`` (used to mark assistant text): renders its body."""

        tags: set[str] = {"generation"}  # noqa: RUF012 - jinja2 declares it an instance attribute

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

        def _render_body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        # Like transformers: no HTML escaping (jinja's own tojson escapes <, >, &, ').
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        from datetime import datetime

        return datetime.now().strftime(fmt)

    class TemplateDict:
        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot set underscore-prefixed namespace attributes ({name!r})"
                )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


def render_chat_template(
    template: str,
    messages: list[dict[str, str]],
    special_tokens: Mapping[str, str | None],
    add_generation_prompt: bool,
) -> str:
    """A conversation (e.g. one user message plus the generation prompt), rendered like transformers does."""
    compiled = _TEMPLATE_CACHE.get(template)
    if compiled is None:
        compiled = _template_environment().from_string(template)
        _TEMPLATE_CACHE[template] = compiled
    tokens = {name: value for name, value in special_tokens.items() if value is not None}
    return compiled.render(
        messages=messages,
        tools=None,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        **tokens,
    )


def no_template_error(name: str) -> ValueError:
    return ValueError(f"{name} has no chat template; run without the chat template (raw prompt) instead")
