using Kiln.Distributed;
using Kiln.Training.Models;

namespace Kiln.Training.Parallel;

/// <summary>
/// Data-parallel gradient averaging overlapped with the backward pass, as PyTorch DDP does: units are grouped, in the
/// order the backward pass finishes them (head, top block … bottom block, embedding), into buckets of at least
/// <c>bucketElements</c>; the moment a bucket's last unit is final its all-reduce starts, non-blocking, while the
/// backward pass goes on below. Consecutive units in backward order are adjacent in the flat buffer, so a bucket is
/// one contiguous range and one collective. The gradients are already scaled by 1/D in the backward pass, so the
/// sum is the average.
/// </summary>
public sealed class GradientBuckets : IParameterUnitHooks
{
    private readonly Communicator _comm;
    private readonly float[] _gradients;
    private readonly Bucket[] _buckets;
    private readonly int[] _bucketOfUnit;
    private readonly int[] _pending;
    private readonly List<CommRequest> _inFlight = [];
    private readonly List<int> _launchOrder = [];

    public GradientBuckets(Communicator comm, float[] gradients, ParameterUnit[] units, int bucketElements)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketElements);
        (_comm, _gradients) = (comm, gradients);
        var buckets = new List<Bucket>();
        _bucketOfUnit = new int[units.Length];
        int start = -1, end = -1, count = 0;
        for (int i = units.Length - 1; i >= 0; i--)
        {
            var u = units[i];
            if (count == 0)
                end = u.End;
            else if (u.End != start)
                throw new ArgumentException($"unit {u.Name} does not end where the next one in backward order starts");
            start = u.Offset;
            count++;
            _bucketOfUnit[i] = buckets.Count;
            if (end - start >= bucketElements || i == 0)
            {
                buckets.Add(new Bucket(start, end - start, count));
                count = 0;
            }
        }
        _buckets = buckets.ToArray();
        _pending = new int[_buckets.Length];
    }

    /// <summary>(flat offset, length) of each bucket, in launch order.</summary>
    public IEnumerable<(int Offset, int Length)> Buckets => _buckets.Select(b => (b.Offset, b.Length));

    /// <summary>
    /// Whether this backward pass communicates. Off for all but the last micro-batch of an accumulated step (DDP's
    /// no_sync): gradients add up locally and are averaged once.
    /// </summary>
    public bool Armed { get; set; } = true;

    /// <summary>Buckets launched so far this step, in order: the test that the all-reduces start during backward.</summary>
    public IReadOnlyList<int> LaunchOrder => _launchOrder;

    public void BeforeUse(ParameterUnit unit, bool backward) { }

    public void AfterUse(ParameterUnit unit, bool backward) { }

    public void GradientsFinal(ParameterUnit unit)
    {
        if (!Armed)
            return;
        int b = _bucketOfUnit[unit.Index];
        if (++_pending[b] < _buckets[b].Units)
            return;
        _launchOrder.Add(b);
        _inFlight.Add(_comm.AllReduceAsync(_gradients.AsMemory(_buckets[b].Offset, _buckets[b].Length)));
    }

    /// <summary>Waits for every bucket's all-reduce; after it the gradients are the average over the ranks.</summary>
    public void WaitAll()
    {
        foreach (var r in _inFlight)
            r.Wait();
        _inFlight.Clear();
        if (_launchOrder.Count != _buckets.Length)
            throw new InvalidOperationException($"{_buckets.Length - _launchOrder.Count} gradient buckets were never completed by the backward pass");
        Array.Clear(_pending);
    }

    /// <summary>Starts the next step's bookkeeping.</summary>
    public void Reset()
    {
        _launchOrder.Clear();
        Array.Clear(_pending);
    }

    private readonly record struct Bucket(int Offset, int Length, int Units);
}
