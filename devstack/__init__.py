"""Local development and test infrastructure (cluster, simulators, local Hub).

Product code never imports from here; devstack may use product code's public interfaces.
"""
