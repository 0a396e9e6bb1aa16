"""The verbs of Cortex v0.10's CLI that inferd answers in its own way.

``cortex cluster up`` is the first command of Cortex's install guide, and ``cortex configure``
the second a cluster's users ran; both named an AWS cluster that inferd does not need. Each
now says what does the same here instead of click's "No such command". ``cortex completion``
printed bash completion (``source <(cortex completion)``), as ``completion`` does here.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

# What each verb did in Cortex, and what does its work here: the one sentence a user gets.
CORTEX_ONLY: dict[str, str] = {
    "cluster": (
        "`cortex cluster` made Cortex's AWS cluster; inferd needs none: `{prog} up` starts the "
        "operator on this machine (the first `{prog} deploy` starts it too), `{prog} down` stops it, "
        "`{prog} version` says whether it runs, `{prog} env add` adds a Ray cluster and "
        "`{prog} export` writes Kubernetes manifests; the system packages a custom image "
        "(`image_predictor_serve`) gave Cortex's replicas are this machine's: install them on it"
    ),
    "configure": (
        "`cortex configure` stored a Cortex cluster's URL and AWS keys; the local operator needs neither "
        "(`{prog} env add` names a Ray cluster; s3:// models are read with the AWS settings of the "
        "operator's environment: `AWS_PROFILE=... {prog} up`)"
    ),
    "support": "`cortex support` mailed a question to Cortex's maintainers; inferd has no such service",
}


CX_ALIAS = """
# alias
alias cx='cortex'
_cx_completion() {
    _cortex_completion cortex "$2" "$3"
}
complete -o nosort -F _cx_completion cx
"""


def cortex_only(name: str, prog: str) -> str | None:
    """The sentence for a verb of Cortex's CLI that inferd has no command for, else None."""
    text = CORTEX_ONLY.get(name)
    return None if text is None else text.format(prog=prog)


@click.command()
@click.argument("shell", default="bash", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: source <(inferd completion).

    As Cortex's `cortex completion` (bash, the default; run as `cortex`, with Cortex's `cx`
    alias); zsh and fish too.

    \b
    Example:
      echo 'source <(inferd completion)' >> ~/.bashrc
    """
    root = click.get_current_context().find_root()
    prog = root.info_name or "inferd"
    variable = "_{}_COMPLETE".format(prog.replace("-", "_").upper())
    script = get_completion_class(shell)
    assert script is not None  # the Choice above names click's own three
    click.echo(script(root.command, {}, prog, variable).source())
    if prog == "cortex" and shell == "bash":
        # Cortex's completion "will also add the "cx" alias" (docs/cluster/cli.md); click's
        # function runs the command it completes ($1), which for an alias is cortex
        click.echo(CX_ALIAS)
