"""`ckreg manifest schema|check`: the manifest format for editors, and validation without an audit."""

from __future__ import annotations

import json

import click


@click.group("manifest")
def manifest_group() -> None:
    """Manifests: what an archive should hold (see docs/audit.md)."""


@manifest_group.command("schema")
def schema_cmd() -> None:
    """Print the manifest's JSON Schema (for editors and yaml-language-server)."""
    from ckreg.manifest import manifest_schema

    click.echo(json.dumps(manifest_schema(), indent=2, ensure_ascii=False))


@manifest_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the validated manifest(s) as JSON.")
def check_cmd(files: tuple[str, ...], as_json: bool) -> None:
    """Validate manifest FILES; exit 0 when all are valid, 2 with every problem (file:line: field: what)."""
    from ckreg.errors import ManifestError
    from ckreg.findings import EXIT_USAGE
    from ckreg.manifest import load_manifest

    failed = False
    for file in files:
        try:
            manifest = load_manifest(file)
        except ManifestError as exc:
            if len(files) == 1:
                raise  # one message, exit 2 (cli/__init__.py)
            click.echo(f"error: {exc.render()}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(manifest.model_dump_json(indent=2))
            continue
        names = ", ".join(m.name for m in manifest.models)
        click.echo(f"{file}: ok ({len(manifest.models)} model{'s' if len(manifest.models) != 1 else ''}: {names})")
    if failed:
        click.get_current_context().exit(EXIT_USAGE)


@manifest_group.command("lock")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=str))
def lock_cmd(manifest: str) -> None:
    """Record the expected layout of every module: model in MANIFEST's .lock.json (needs the [train] extra).

    Each module is built on torch's meta device (no memory, no weights); the audit then reads
    the lock without torch. Run it again whenever a module: or its kwargs change.
    """
    from ckreg.zoo.lock import lock_manifest

    path, lock = lock_manifest(manifest)
    for name, e in lock["models"].items():
        click.echo(f"{name}: {e['module']}: {len(e['keys'])} keys, {e['params']:,} params, "
                   f"{e['buffers']:,} buffer elements")
    click.echo(f"wrote {path}")
