"""Sample trading bots built only on the participant SDK (``optivex bot ...``)."""
