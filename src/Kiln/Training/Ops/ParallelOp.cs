using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Base of the training ops: one long-lived object per op kind whose fields hold the current call's arguments,
/// so a dispatch over the <see cref="WorkerPool"/> allocates nothing. Calls are sequential (one model, one thread
/// driving it), so a single instance serves every layer. Every split is over rows, heads or columns whose
/// results do not depend on how the range is cut, so the bits are the same for any thread count.
/// </summary>
public abstract class ParallelOp : IParallelWork
{
    private readonly WorkerPool? _pool;

    protected ParallelOp(WorkerPool? pool) => _pool = pool;

    protected int ThreadCount => _pool?.ThreadCount ?? 1;

    protected WorkerPool? Pool => _pool;

    protected void Run(int count, int grain = 1)
    {
        if (_pool is null)
            Execute(0, count, 0);
        else
            _pool.For(count, this, grain);
    }

    public abstract void Execute(int begin, int end, int worker);
}
