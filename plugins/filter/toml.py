# -*- coding: utf-8 -*-
# Copyright (c) llmops.ollama contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``to_toml`` filter: a mapping as a TOML 1.0 document (documentation in to_toml.yml).

Strings are always written as TOML basic strings with every character TOML requires escaped, so a
value taken from an inventory (a model name with a quote, a header with a backslash, a tab, a
non-ASCII letter) can never break the document or change its meaning. Nothing here depends on a
TOML library, so it runs on any controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import math
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.collections import is_sequence

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


def _unvault(value):
    """The text of a vaulted value: on ansible-core before 2.19 a filter gets an AnsibleVaultEncryptedUnicode (a
    sequence, not a str) for a ``!vault`` variable; its str() is the decrypted text. Anything else is returned as is."""
    if getattr(value, "__ENCRYPTED__", False):
        return str(value)
    return value


def _path(parts):
    return ".".join(parts) or "(top level)"


def _string(value):
    """A TOML basic string: quotes, backslashes and control characters escaped, other text kept as is."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\u%04X" % ord(char))
        elif 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError("a lone surrogate (U+%04X) is not valid in TOML" % ord(char))
        else:
            out.append(char)
    return '"%s"' % "".join(out)


def _key(key, where):
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise AnsibleFilterError("to_toml: key %r at %s is a %s; TOML keys are strings"
                                 % (key, _path(where), type(key).__name__))
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _is_table(value):
    return isinstance(value, Mapping)


def _is_table_array(value):
    return is_sequence(value) and len(value) > 0 and all(_is_table(v) for v in value)


def _scalar(value, where):
    value = _unvault(value)
    if value is None:
        raise AnsibleFilterError("to_toml: %s is null, which TOML cannot express; leave the key out instead"
                                 % _path(where))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -2 ** 63 <= value < 2 ** 63:
            raise AnsibleFilterError("to_toml: %s = %d is out of TOML's 64-bit integer range" % (_path(where), value))
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(float(value))
        return text if ("." in text or "e" in text or "E" in text) else text + ".0"
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise AnsibleFilterError("to_toml: %s holds bytes that are not UTF-8" % _path(where)) from None
    if isinstance(value, str):
        try:
            return _string(str(value))
        except ValueError as exc:
            raise AnsibleFilterError("to_toml: %s: %s" % (_path(where), exc)) from None
    if _is_table(value):
        return _inline_table(value, where)
    if is_sequence(value):
        return "[%s]" % ", ".join(_scalar(v, where + ["[%d]" % i]) for i, v in enumerate(value))
    raise AnsibleFilterError("to_toml: %s is a %s, which has no TOML form" % (_path(where), type(value).__name__))


def _inline_table(value, where):
    items = ["%s = %s" % (_key(k, where), _scalar(v, where + [str(k)]))
             for k, v in value.items() if v is not None]
    return "{ %s }" % ", ".join(items) if items else "{}"


def _table(lines, table, where, sort_keys, name=None, array=False):
    """Append `table` to `lines`: its header, its plain keys, then its sub-tables and arrays of tables.

    `name` is the table's dotted name (None for the document itself); `array` says it is one element of an
    array of tables (``[[name]]``), whose header is always written. A plain table's header is left out when
    it holds nothing but sub-tables, as TOML allows.
    """
    table = dict((k, _unvault(v)) for k, v in table.items())
    keys = sorted(table, key=str) if sort_keys else list(table)
    plain = [k for k in keys if table[k] is not None and not _is_table(table[k]) and not _is_table_array(table[k])]
    nested = [k for k in keys if _is_table(table[k]) or _is_table_array(table[k])]
    if name is not None and (array or plain or not nested):
        if lines:
            lines.append("")
        lines.append(("[[%s]]" if array else "[%s]") % name)
    for k in plain:
        lines.append("%s = %s" % (_key(k, where), _scalar(table[k], where + [str(k)])))
    for k in nested:
        child = _key(k, where) if name is None else "%s.%s" % (name, _key(k, where))
        value = table[k]
        if _is_table(value):
            _table(lines, value, where + [str(k)], sort_keys, child)
        else:
            for i, item in enumerate(value):
                _table(lines, item, where + ["%s[%d]" % (k, i)], sort_keys, child, array=True)
    return lines


def to_toml(data, sort_keys=False):
    """Render the mapping `data` as a TOML document (see to_toml.yml)."""
    if not _is_table(data):
        raise AnsibleFilterError("to_toml: the input must be a mapping (a TOML document is a table), got %s"
                                 % type(data).__name__)
    lines = _table([], data, [], sort_keys)
    return "\n".join(lines) + "\n" if lines else ""


class FilterModule(object):
    def filters(self):
        return {"to_toml": to_toml}
