"""The floor of any Typer program: one command, one option, nothing else imported. `nox -s
bench` times its `--help` beside `mtv-register --help`, on the same interpreter in the same run:
as Typer renders help by default (with rich), and with plain help (`TYPER_FLOOR_PLAIN=1`), as
mtv-register renders it."""

import os

import typer

app = typer.Typer(rich_markup_mode=None) if os.environ.get("TYPER_FLOOR_PLAIN") else typer.Typer()


@app.command()
def greet(name: str = typer.Option("world", help="Who to greet.")) -> None:
    """Greet someone."""
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
