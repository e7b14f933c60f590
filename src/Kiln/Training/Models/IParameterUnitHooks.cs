namespace Kiln.Training.Models;

/// <summary>
/// Told by <see cref="TrainableModel{T}"/> when it starts and stops using a unit's parameters and when a unit's
/// gradients are final (no later part of the backward pass adds to them): the points where data parallel training
/// starts a bucket's all-reduce and ZeRO gathers, frees and reduce-scatters.
/// </summary>
public interface IParameterUnitHooks
{
    /// <summary>Before the unit's parameters are read (and, when <paramref name="backward"/>, its gradients added to).</summary>
    void BeforeUse(ParameterUnit unit, bool backward);

    void AfterUse(ParameterUnit unit, bool backward);

    /// <summary>The unit's gradients hold their value for this backward pass.</summary>
    void GradientsFinal(ParameterUnit unit);
}
