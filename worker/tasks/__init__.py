"""One module per stage: pose (queue ``pose``), classify and report (queue ``classify``)."""
