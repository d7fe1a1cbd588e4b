"""The YAML recipes, installed as `dalitrain.configs` so that `dalitrain demo` finds them in any install."""
