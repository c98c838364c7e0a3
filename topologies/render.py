"""Render a daemon config (nested dicts and lists of dicts) as TOML: tables, arrays of tables,
strings, numbers, booleans and lists of those. Configs are rendered from data, never
concatenated, so a value can never break the file's syntax."""
import json

__all__ = ["toml"]


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)              # a TOML basic string is a JSON string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {type(v).__name__} in TOML: {v!r}")


def _is_table_array(v):
    return isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v)


def toml(config, _prefix=""):
    """The TOML text of `config`."""
    lines = []
    scalars = {k: v for k, v in config.items()
               if not isinstance(v, dict) and not _is_table_array(v)}
    for k, v in scalars.items():
        lines.append(f"{k} = {_value(v)}")
    for k, v in config.items():
        name = f"{_prefix}{k}"
        if isinstance(v, dict):
            lines.append(f"\n[{name}]")
            lines.append(toml(v, name + ".").rstrip("\n"))
        elif _is_table_array(v):
            for item in v:
                lines.append(f"\n[[{name}]]")
                lines.append(toml(item, name + ".").rstrip("\n"))
    return "\n".join(x for x in lines if x != "").strip("\n") + "\n"
