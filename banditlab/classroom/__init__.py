"""The classroom demonstration: the simulations, the HTML page and its SVG charts."""
