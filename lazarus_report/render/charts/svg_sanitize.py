"""Chart SVG checking and compaction: only expected elements and attributes, per-chart ids (byte-identical
across processes), and vl-convert's SVG made smaller without changing the picture."""

from __future__ import annotations

import html
import re
from xml.etree import ElementTree

# What a chart SVG may contain. The SVG goes into the page as markup, so check it rather than
# trust it: every model string inside must have arrived as escaped text.
_SVG_ELEMENTS = {
    "svg",
    "g",
    "path",
    "rect",
    "line",
    "text",
    "tspan",
    "defs",
    "linearGradient",
    "stop",
    "clipPath",
    "title",
}


SVG_NS = "http://www.w3.org/2000/svg"


_XLINK_NS = "http://www.w3.org/1999/xlink"


def checked_svg(svg: str) -> str:
    """``svg`` unchanged once checked: only expected elements, no event handlers or outside links
    (ValueError otherwise)."""
    _check_tree(ElementTree.fromstring(svg))
    return svg


def _check_tree(root: ElementTree.Element) -> None:
    for el in root.iter():
        tag = el.tag.rpartition("}")[2]
        if tag not in _SVG_ELEMENTS:
            raise ValueError(f"unexpected <{tag}> in chart SVG")
        for name, value in el.attrib.items():
            local = name.rpartition("}")[2].lower()
            if local.startswith("on") or (local == "href" and not value.startswith("#")):
                raise ValueError(f"unexpected attribute {name}={value!r} in chart SVG")


_ID = re.compile(r'\bid="([^"]+)"')


def renumber_ids(svg: str, chart_id: str) -> str:
    """Give every id in ``svg`` a per-chart name and update its references."""
    mapping: dict[str, str] = {}
    for old in _ID.findall(svg):
        mapping.setdefault(old, f"{chart_id}-{len(mapping) + 1}")
    if not mapping:
        return svg
    names = "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf'(\bid="|url\(#|href="#)({names})(?=[")])')
    return pattern.sub(lambda m: m.group(1) + mapping[m.group(2)], svg)


# Attributes for scripts and assistive technology on the live chart; the static picture has no use
# for them (the figure carries role="img" and a text alternative).
_INERT = {"class", "role", "pointer-events", "version"}


# Presentation attributes that children inherit: a value every child of a group repeats can sit on
# the group once instead.
_INHERITED = (
    "fill", "fill-opacity", "stroke", "stroke-width", "stroke-opacity", "stroke-dasharray", "stroke-linecap",
    "stroke-linejoin", "stroke-miterlimit", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
)  # fmt: skip


_EMPTY_PATH_DATA = {"", "M0,0h0v0h0Z"}


_LONG_DECIMAL = re.compile(r"-?\d+\.\d{3,}")


_PATH_DECIMAL = re.compile(r"-?\d+\.\d{2,}")


def compact_svg(svg: str) -> str:
    """vl-convert's SVG, checked (see ``_check_tree``) and made smaller without changing the picture.

    * ``class``, ``role``, ``aria-*``, ``pointer-events`` and ``version`` attributes go, and with them
      the empty background/foreground paths vega adds to every group (``display="none"`` or no area);
    * default values go: ``opacity="1"`` (not inherited), zero line coordinates, ``translate(0,0)``;
    * groups without attributes are unwrapped;
    * an inherited presentation attribute that every child of a group repeats (the stroke of 30 tick
      lines, the font of the axis labels) moves to the group;
    * coordinates inside ``transform`` are rounded to 1/100 px, inside path data to 1/10 px.

    The tests rasterize the SVG before and after and compare the pixels.
    """
    root = ElementTree.fromstring(svg)
    _check_tree(root)
    _strip(root)
    _hoist(root)  # before unwrapping: vega's groups hold one kind of mark each (ticks, labels ...)
    _unwrap_groups(root)
    return _serialize(root)


def _strip(el: ElementTree.Element) -> None:
    for child in list(el):
        local = child.tag.rpartition("}")[2]
        d = child.get("d")
        # Invisible marks (the crosshair's pointer bands and rule, markers shown only at one layer) draw nothing.
        if (
            child.get("display") == "none"
            or child.get("opacity") == "0"
            or (local == "path" and d in _EMPTY_PATH_DATA and len(child) == 0)
        ):
            _remove(el, child)
            continue
        _strip(child)
    for name in list(el.attrib):
        value = el.attrib[name]
        if (
            name in _INERT
            or name.startswith("aria-")
            or (name == "opacity" and value == "1")
            or (el.tag.endswith("}line") and name in ("x1", "y1", "x2", "y2") and value == "0")
        ):
            del el.attrib[name]
        elif name == "d":
            el.attrib[name] = _PATH_DECIMAL.sub(lambda x: short_number(float(x.group()), 1), value)
        elif name == "transform":
            if value == "translate(0,0)":
                del el.attrib[name]
            else:
                el.attrib[name] = _LONG_DECIMAL.sub(lambda x: short_number(float(x.group())), value)


def _remove(parent: ElementTree.Element, child: ElementTree.Element) -> None:
    if child.tail and child.tail.strip():
        raise ValueError("unexpected text in chart SVG")
    parent.remove(child)


def _unwrap_groups(el: ElementTree.Element) -> None:
    children: list[ElementTree.Element] = []
    for child in el:
        _unwrap_groups(child)
        bare = child.tag.endswith("}g") and not child.attrib and not (child.text or "").strip()
        if bare and not (child.tail or "").strip():
            children.extend(child)
        else:
            children.append(child)
    el[:] = children


def _hoist(el: ElementTree.Element) -> None:
    for child in el:
        _hoist(child)
    kids = list(el)
    if not el.tag.endswith(("}g", "}svg")) or len(kids) < 2 or any(len(k) for k in kids):
        return
    for name in _INHERITED:
        values = {k.get(name) for k in kids}
        if len(values) == 1 and None not in values:
            el.set(name, values.pop())  # type: ignore[arg-type]
            for k in kids:
                del k.attrib[name]


def _serialize(root: ElementTree.Element) -> str:
    out: list[str] = []
    uses_xlink = any(n.startswith("{" + _XLINK_NS) for el in root.iter() for n in el.attrib)

    def attr_name(name: str) -> str:
        if name.startswith("{" + _XLINK_NS + "}"):
            return "xlink:" + name.rpartition("}")[2]
        return name

    def write(el: ElementTree.Element, top: bool) -> None:
        tag = el.tag.rpartition("}")[2]
        attrs = "".join(f' {attr_name(k)}="{html.escape(v, quote=True)}"' for k, v in el.attrib.items())
        if top:
            attrs = f' xmlns="{SVG_NS}"' + (f' xmlns:xlink="{_XLINK_NS}"' if uses_xlink else "") + attrs
        if len(el) == 0 and not el.text:
            out.append(f"<{tag}{attrs}/>")
        else:
            out.append(f"<{tag}{attrs}>")
            if el.text:
                out.append(html.escape(el.text, quote=False))
            for child in el:
                write(child, False)
            out.append(f"</{tag}>")
        if el.tail and not top:
            out.append(html.escape(el.tail, quote=False))

    write(root, True)
    return "".join(out)


def short_number(x: float, digits: int = 2) -> str:
    """``x`` for an SVG attribute: at most ``digits`` decimals, no trailing zeros, never "-0"."""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
