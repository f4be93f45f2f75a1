"""Central differences for gradient checks (shared by the layer and Caffe-patch tests)."""


def central_difference(values, index, objective, step):
    """d objective / d values[index] by central differences; `values` is changed in place
    (a Caffe blob's data, say) and restored."""
    orig = float(values[index])
    values[index] = orig + step
    up = objective()
    values[index] = orig - step
    down = objective()
    values[index] = orig
    return (up - down) / (2 * step)
