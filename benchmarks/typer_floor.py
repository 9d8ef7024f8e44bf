"""The floor of any Typer program: one command, one option, nothing else imported. `nox -s
bench` times its `--help` beside `mtv-register --help`, on the same interpreter in the same run."""

import typer

app = typer.Typer()


@app.command()
def greet(name: str = typer.Option("world", help="Who to greet.")) -> None:
    """Greet someone."""
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
