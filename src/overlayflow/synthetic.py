"""Synthetic RoboTwin 2.0 episodes: the demo data and the tests' fixture factory."""

# Named object colours, true RGB. Red and blue are both present so that a red/blue channel swap
# anywhere in the pipeline moves the objects a server finds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35),
    "green": (40, 170, 60),
    "blue": (35, 60, 215),
    "yellow": (225, 205, 40),
}
