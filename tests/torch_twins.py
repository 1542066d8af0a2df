"""The PyTorch twin of every function the backprop CLI knows, for the tests that hold the CLI
against torch (cli_torch_ops.py, cli_torch_hessian.py).  A function the CLI lists that is not
here fails those tests, so a new op gets its twin in this one place.  Importing this module
imports torch: the tests catch the ImportError and skip."""
import torch
import torch.nn.functional as F

UNARY = {
    "neg": lambda x: -x, "recip": lambda x: 1 / x, "exp": torch.exp, "log": torch.log,
    "sqrt": torch.sqrt, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "relu": torch.relu, "abs": torch.abs, "square": torch.square,
    "softplus": F.softplus, "silu": F.silu, "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "log1p": torch.log1p,
    "expm1": torch.expm1, "erf": torch.erf,
}
BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
    "max": torch.maximum, "min": torch.minimum,
    # comparisons: 1.0 or 0.0, with no gradient (torch's booleans cut the graph, as ours do)
    "lt": lambda a, b: torch.lt(a, b).to(a.dtype), "le": lambda a, b: torch.le(a, b).to(a.dtype),
    "gt": lambda a, b: torch.gt(a, b).to(a.dtype), "ge": lambda a, b: torch.ge(a, b).to(a.dtype),
    "eq": lambda a, b: torch.eq(a, b).to(a.dtype), "ne": lambda a, b: torch.ne(a, b).to(a.dtype),
}
