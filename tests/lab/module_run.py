"""Running a module's main() in-process with given arguments, as community.general's unit tests do (arguments
patched in with ansible's own patch_module_args), but with the real exit_json/fail_json: the caller reads the JSON
the module printed, so a result that cannot be serialised is caught too. Anything else escaping main() is a
traceback, which the callers treat as a bug."""
import contextlib
import io
import json
import re

from ansible.module_utils.common import warnings as ansible_warnings
from tests.unit.compat import patch_module_args


def run_module(module, args):
    """Run module.main() with `args`; return (exit code, the result it printed). Any exception is a bug.

    A warning is in the result's `warnings`, as a user sees it: where an earlier test left ansible-core's controller
    display loaded in this process, ansible-core 2.19 and later print a module's warning on stderr at once instead of
    returning it, and those lines are added to `warnings` here."""
    out, err = io.StringIO(), io.StringIO()
    ansible_warnings._global_warnings.clear()
    ansible_warnings._global_deprecations.clear()
    code = None
    with patch_module_args(args), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code
    assert code is not None, "main() returned without exit_json or fail_json"
    text = out.getvalue().strip()
    assert text, "the module printed nothing"
    result = json.loads(text.splitlines()[-1])
    printed = [line for line in err.getvalue().splitlines() if "[WARNING]" in line]
    if printed:
        result.setdefault("warnings", []).extend(printed)
    return code, result


TRACEBACK_SIGNS = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)(: |$)|object at 0x|<class "
                             r"|: None\.|ordinal not in range|expected string or bytes-like|is not iterable")


def _says(msg, phrase):
    """Whether `msg` holds `phrase`, also where Ansible masked a no_log value inside it (every occurrence of a short
    value, such as an api_token "t", becomes ********, letters of Ansible's own wording included)."""
    if phrase in msg:
        return True
    parts = set(phrase[i:j] for i in range(len(phrase)) for j in range(i + 1, len(phrase) + 1))
    return any(phrase.replace(part, "********") in msg for part in parts)


def assert_clear_failure(code, result):
    msg = result.get("msg")
    assert code == 1 and result.get("failed") is True, result
    assert isinstance(msg, str) and len(msg) >= 15, result
    signs = TRACEBACK_SIGNS.search(msg)
    # the argument spec's own "is of type <class 'int'> and we were unable to convert" is Ansible's wording (where a
    # no_log value is a short string, such as a header value "n", Ansible masks it inside that wording too)
    ansible_wording = _says(msg, "we were unable to convert") or (_says(msg, "is of type") and "********" in msg)
    assert not signs or (signs.group(0) == "<class " and ansible_wording), msg
    assert "exception" not in result, result
