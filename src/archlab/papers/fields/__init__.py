"""Neural fields, operators, compression and function approximation: networks that are
functions (KAN layers, kernel features, operators between function spaces, tractable densities).
"""
