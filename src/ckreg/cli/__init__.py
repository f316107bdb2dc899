"""The thin CLI: each command parses options, calls one core function, renders, exits.

Commands are resolved lazily (module:attribute) so `ckreg --help` and
`ckreg inspect` never import torch, sklearn or the zoo.
Unexpected exceptions exit 4 (EXIT_CRASH), never 1, so a crash never looks
like a finding; `CkregError` prints one line and exits 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from ckreg import __version__
from ckreg.errors import CkregError
from ckreg.findings import EXIT_CRASH, EXIT_USAGE

# command name -> "module:attribute" (each module owns one command or group)
COMMANDS: dict[str, str] = {
    "inspect": "ckreg.cli.inspect_cmd:inspect_cmd",
    "audit": "ckreg.cli.audit_cmd:audit_cmd",
    "demo": "ckreg.cli.audit_cmd:demo_cmd",
    "manifest": "ckreg.cli.manifest_cmd:manifest_group",
    "rename": "ckreg.cli.rename_cmd:rename_cmd",
    "scaler": "ckreg.cli.scaler_cmd:scaler_group",
    "train": "ckreg.cli.train_cmd:train_cmd",
    "eval": "ckreg.cli.train_cmd:eval_cmd",
    "verify": "ckreg.cli.verify_cmd:verify_cmd",
    "retrain": "ckreg.cli.verify_cmd:retrain_cmd",
    "registry": "ckreg.cli.registry_cmd:registry_group",
    "export": "ckreg.cli.registry_cmd:export_cmd",
    "families": "ckreg.cli.families_cmd:families_cmd",
    "lineage": "ckreg.cli.lineage_cmd:lineage_cmd",
    "report": "ckreg.cli.report_cmd:report_group",
}


# What the `[train]` extra brings (pyproject.toml); a missing one is a user's install choice, not a crash.
TRAIN_EXTRA_MODULES = {"torch", "numpy", "sklearn", "safetensors", "matplotlib"}


def report_crash(exc: BaseException) -> None:
    """A bug: a short message on stderr (where it happened, what it was); the traceback with CKREG_DEBUG=1."""
    import os
    import traceback

    if os.environ.get("CKREG_DEBUG"):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" in {last.name} ({os.path.basename(last.filename)}:{last.lineno})"
    text = " ".join(str(exc).split())[:200]
    click.echo(f"ckreg crashed: {type(exc).__name__}: {text}{where}: this is a bug in ckreg, not a finding "
               "about your files; please report it (CKREG_DEBUG=1 shows the traceback).", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._available(name))

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._available(name):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        """Map user errors to exit 2 and crashes to exit 4 here, so CliRunner tests see the real codes."""
        from ckreg.cli._common import one_line_warnings

        try:
            with one_line_warnings():
                return super().invoke(ctx)
        except CkregError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            ctx.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # `ckreg ... | head`: the reader left; that is not a crash. Point stdout at devnull so
            # the interpreter's final flush cannot raise again (Python docs, "Note on SIGPIPE").
            _quiet_stdout()
            ctx.exit(141)
        except Exception as exc:
            # The base install (inspect/audit/rename) has no torch; the rest needs the extra:
            # a missing extra is the user's install choice, not a crash.
            missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
            if missing and missing.split(".")[0] in TRAIN_EXTRA_MODULES:
                click.echo(f"error: `ckreg {ctx.invoked_subcommand}` needs {missing}, which the base install "
                           "leaves out: pip install 'ckreg[train]'", err=True)
                ctx.exit(EXIT_USAGE)
            report_crash(exc)
            ctx.exit(EXIT_CRASH)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckreg")
def cli() -> None:
    """ckreg: inspect, audit, rename, retrain and register PyTorch checkpoints."""


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (CliRunner): nothing to redirect
        pass


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit 2 and crashes to exit 4."""
    try:
        # With standalone_mode=False click returns ctx.exit(code)'s code instead of raising.
        rc = cli.main(args=argv, prog_name="ckreg", standalone_mode=False)
        if isinstance(rc, int) and not isinstance(rc, bool):
            sys.exit(rc)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except CkregError as exc:
        click.echo(f"error: {exc.render()}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(141)
    except SystemExit:
        raise
    except Exception as exc:  # a crash: report it as one, never as a finding
        report_crash(exc)
        sys.exit(EXIT_CRASH)
    sys.exit(0)
