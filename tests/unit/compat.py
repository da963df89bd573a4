"""What the unit tests need from ansible-core, on every release the collection supports (2.16 and later)."""
import contextlib
import json

__all__ = ["patch_module_args"]

try:
    from ansible.module_utils.testing import patch_module_args  # ansible-core 2.19 and later
except ImportError:  # ansible-core 2.16 to 2.18: the arguments a module reads are in basic._ANSIBLE_ARGS
    @contextlib.contextmanager
    def patch_module_args(args=None):
        from ansible.module_utils import basic

        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode("utf-8")
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved
