from .toolstack.cli import run

run()
