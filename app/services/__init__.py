"""Plain functions behind the panels (no Dash): callbacks and jobs call them with a Config."""
