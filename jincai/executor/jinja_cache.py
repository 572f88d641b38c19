"""A compiled-template cache for one ansible-playbook run, shared by its forked workers.

Why: Ansible forks one worker per host per task, and every worker compiles from scratch each Jinja
template and expression it meets (task arguments, ``when``, role defaults such as
``"{{ jincai_vpn_client.server }}"``): ansible-core 2.19 keeps no compiled form across calls. A py-spy
profile of the converged baseline play on the lab (11 servers, ~80 tasks each) put ~33 s of CPU in
``Environment.compile`` alone, almost all of it the same strings compiled again in the next worker.

What: Jinja's compilation is a pure function of the template source and the environment's compile
settings, so this module keeps the resulting Python code objects: in memory (the parent's entries are
inherited by every fork) and, for what a worker compiles, in a per-run directory (marshal files,
written atomically) that the next workers read. The directory lives under Ansible's own per-run local
temporary directory (``C.DEFAULT_LOCAL_TMP``, mode 0700, removed when the run ends), so no entry ever
outlives the run, the plugins and the configuration it was compiled with.

The key is everything Jinja's code generation reads: the source, the template name and file name, the
environment class, its lexer settings (ansible's ``TemplateOverrides`` fields), ``optimized``,
``autoescape``, ``is_async``, its extensions, and ansible's ``escape_backslashes`` compile context.
Template debugging (``_debuggable_template_source``), raw and ``defer_init`` compiles and a callable
``autoescape`` are never cached. Errors are never cached: a source that fails to compile fails the
same way every time, through Jinja's own path.

``install()`` patches ``AnsibleEnvironment.compile`` and ``compile_expression`` once; it refuses
(returns False, changes nothing) on an ansible-core or Jinja it was not written against.
``JINCAI_JINJA_CACHE=0`` turns it off. ``stats()`` counts hits and compiles in this process.
"""

import contextvars
import hashlib
import marshal
import os

SUPPORTED_ANSIBLE = ("2.19.",)
SUPPORTED_JINJA = ("3.1.",)

_MEM = {}
_STATS = {"hits": 0, "file_hits": 0, "compiled": 0, "uncacheable": 0}
_STATE = {"dir": None, "installed": False}  # installed: (class, original compile, original expression)
# The key a compile_expression call waits for: Jinja compiles the expression's AST through
# Environment.compile, which stores its code under this key.
_PENDING = contextvars.ContextVar("jincai_jinja_cache_pending", default=None)


def enabled():
    """False when ``JINCAI_JINJA_CACHE`` is 0/off/false/no."""
    return os.environ.get("JINCAI_JINJA_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")


def stats():
    """This process's counters (a copy): hits in memory, hits read from the run's directory, compiles
    stored, and compiles that could not be cached."""
    return dict(_STATS)


def _env_key(env, jinja_bits):
    """The compile settings of ``env`` that Jinja's lexer, parser and code generator read, or None when
    one of them cannot be part of a key (then the compile is not cached)."""
    if getattr(env, "_debuggable_template_source", False) or callable(env.autoescape):
        return None
    lexer = tuple(getattr(env, name) for name in jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES)
    tcc = jinja_bits._TemplateCompileContext.current(optional=True)
    escape = tcc.escape_backslashes if tcc else None
    return (type(env).__module__, type(env).__qualname__, lexer, env.optimized, env.autoescape,
            env.is_async, tuple(sorted(env.extensions)), escape)


def _digest(key):
    return hashlib.blake2b(repr(key).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def _get(key):
    """The cached code object for ``key``, or None."""
    code = _MEM.get(key)
    if code is not None:
        _STATS["hits"] += 1
        return code
    directory = _STATE["dir"]
    if directory:
        try:
            with open(os.path.join(directory, _digest(key)), "rb") as fh:
                code = marshal.load(fh)
        except (OSError, EOFError, ValueError, TypeError):
            return None
        _MEM[key] = code
        _STATS["file_hits"] += 1
        return code
    return None


def _put(key, code):
    """Keep ``code`` in memory and, when the run has a directory, in a file the next workers read."""
    _MEM[key] = code
    _STATS["compiled"] += 1
    directory = _STATE["dir"]
    if not directory:
        return
    path = os.path.join(directory, _digest(key))
    if os.path.exists(path):
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        data = marshal.dumps(code)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except (OSError, ValueError):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def shared_entries():
    """How many compiled entries the workers of this run have shared so far (files in the run's
    directory), or None when there is no directory."""
    directory = _STATE["dir"]
    if not directory:
        return None
    try:
        return sum(1 for name in os.listdir(directory) if not name.endswith(".tmp"))
    except OSError:
        return 0


def set_directory(path):
    """Share compiled code through ``path`` (created, mode 0700); None: memory only."""
    if path:
        os.makedirs(path, mode=0o700, exist_ok=True)
    _STATE["dir"] = path


def supported(ansible_version, jinja_version):
    """True for the ansible-core and Jinja releases this cache was written and tested against."""
    return ansible_version.startswith(SUPPORTED_ANSIBLE) and jinja_version.startswith(SUPPORTED_JINJA)


def install(directory=None):
    """Patch ansible's Jinja environment to compile through the cache (once per process). Returns True
    when the cache is active, False when it is turned off or this ansible-core/Jinja is not one it
    supports (nothing patched then)."""
    if _STATE["installed"]:
        set_directory(directory)
        return True
    if not enabled():
        return False
    import jinja2
    from ansible.release import __version__ as ansible_version
    if not supported(ansible_version, jinja2.__version__):
        return False
    from ansible._internal._templating import _jinja_bits
    from jinja2.environment import TemplateExpression
    from jinja2.utils import internalcode

    env_class = _jinja_bits.AnsibleEnvironment
    original_compile = env_class.compile
    original_expression = env_class.compile_expression

    @internalcode
    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):  # noqa: A001 - Jinja's name
        """Environment.compile through the cache (a template's source, or an expression's AST)."""
        pending = _PENDING.get()
        if raw or defer_init:
            return original_compile(self, source, name, filename, raw, defer_init)
        if isinstance(source, str):
            env_key = _env_key(self, _jinja_bits)
            if env_key is None:
                _STATS["uncacheable"] += 1
                return original_compile(self, source, name, filename, raw, defer_init)
            key = ("template", str(source), name, filename, env_key)
            code = _get(key)
            if code is None:
                code = original_compile(self, source, name, filename, raw, defer_init)
                _put(key, code)
            return code
        if pending is not None:
            _PENDING.set(None)
            code = original_compile(self, source, name, filename, raw, defer_init)
            _put(pending, code)
            return code
        return original_compile(self, source, name, filename, raw, defer_init)

    def compile_expression(self, source, undefined_to_none=True):
        """Environment.compile_expression through the cache."""
        env_key = _env_key(self, _jinja_bits) if isinstance(source, str) else None
        if env_key is None:
            _STATS["uncacheable"] += 1
            return original_expression(self, source, undefined_to_none)
        key = ("expression", str(source), env_key)
        code = _get(key)
        if code is not None:
            template = self.template_class.from_code(self, code, self.make_globals(None), None)
            return TemplateExpression(template, undefined_to_none)
        token = _PENDING.set(key)
        try:
            return original_expression(self, source, undefined_to_none)
        finally:
            _PENDING.reset(token)

    env_class.compile = compile
    env_class.compile_expression = compile_expression
    _STATE["installed"] = (env_class, original_compile, original_expression)
    set_directory(directory)
    return True


def uninstall():
    """Undo ``install()`` and forget every cached entry of this process (tests compare both ways)."""
    if _STATE["installed"]:
        env_class, original_compile, original_expression = _STATE["installed"]
        env_class.compile = original_compile
        env_class.compile_expression = original_expression
    _STATE["installed"] = False
    _STATE["dir"] = None
    _MEM.clear()
    for name in _STATS:
        _STATS[name] = 0
