"""Roaming: answering the other parties that ask "may this token charge here?" (OCPI
2.2.1, eMSP side) and the lists a charger keeps to answer it offline (OCPP local
authorization lists), all from the same decision engine and its audit."""
