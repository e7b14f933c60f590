using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Optimization;

namespace Kiln.Training.Parallel;

/// <summary>
/// Data-parallel training over the ranks of a communicator, optionally with ZeRO. Each rank is one replica stepping
/// in lockstep with the others.
/// <para>
/// Data: <see cref="TrainerOptions.Batch"/> is the per-rank batch B. Every rank walks the same loader position over
/// global batches of D·B windows (same seed, same shuffle) and reads only windows [r·B, (r+1)·B) of each: D ranks
/// together see exactly what one process with batch D·B sees, and their losses and gradients are the same
/// quantities, the mean over D·B·T tokens, up to the order of summation.
/// </para>
/// <para>
/// Gradients: the backward pass scales by 1/(D·GradAccum), so a sum over ranks is the global mean. Stages 0 and 1
/// all-reduce in buckets overlapped with backward (<see cref="GradientBuckets"/>); stages 2 and 3 reduce-scatter each
/// unit as it completes (<see cref="ShardedModelState"/>). Clipping uses the global norm (sum of squares all-reduced
/// when gradients are sharded). The reported loss is the mean over ranks.
/// </para>
/// </summary>
public sealed class DataParallelTrainer
{
    /// <summary>PyTorch DDP's default bucket: 25 MiB of fp32 gradients.</summary>
    public const int DefaultBucketElements = 25 << 20 >> 2;

    private readonly Communicator _comm;
    private readonly int[] _inputs;
    private readonly int[] _targets;
    private readonly LearningRateSchedule _schedule;
    private readonly AdamW? _adam;
    private readonly ZeroOptimizer? _zeroOptimizer;
    private readonly GradientBuckets? _buckets;
    private readonly ShardedModelState? _sharded;
    private readonly float[] _send = [], _gathered = [];
    private readonly double[] _scalar = new double[1];

    private DataParallelTrainer(Communicator comm, TrainingConfig config, TrainerOptions options, ZeroStage zero, TokenStream train,
        WorkerPool? pool, int bucketElements)
    {
        config.Validate();
        options.Validate(config);
        if (train.VocabSize > config.Vocab)
            throw new TrainingConfigException(
                $"{train.Path} was tokenized with a vocabulary of {train.VocabSize}, larger than the model's vocab of {config.Vocab}");
        (_comm, Config, Options, Zero) = (comm, config, options, zero);
        Model = TrainableModel<float>.Create(config, pool, options.Recompute);
        Loader = new TokenBatchLoader(train, checked(options.Batch * comm.Size), options.SequenceLength, options.Shuffle, options.Seed);
        Random = new TrainingRandom(options.Seed);
        _inputs = new int[options.Batch * options.SequenceLength];
        _targets = new int[_inputs.Length];
        _schedule = options.Schedule;
        var units = Model.Units;
        if (zero == ZeroStage.None)
            _adam = new AdamW(Model.Parameters, options.Adam);
        else
        {
            Partition = new ZeroPartition(units, Model.Parameters.Tensors, comm.Rank, comm.Size);
            _zeroOptimizer = new ZeroOptimizer(Partition, options.Adam);
        }
        if (zero <= ZeroStage.OptimizerStates)
            Model.UnitHooks = _buckets = new GradientBuckets(comm, Model.Parameters.Gradients, units, bucketElements);
        else
        {
            _sharded = new ShardedModelState(comm, Partition!, Model.Parameters, units, shardParameters: zero == ZeroStage.Parameters);
            Model.UnitHooks = _sharded;
            Model.Parameters.Storage = _sharded;
        }
        if (zero is ZeroStage.OptimizerStates or ZeroStage.Gradients)
        {
            int block = 0;
            foreach (var s in Partition!.Units)
                block = Math.Max(block, s.BlockLength);
            _send = new float[block];
            _gathered = new float[block * comm.Size];
        }
    }

    public TrainingConfig Config { get; }

    /// <summary>Batch is per rank; the global batch of a step is Batch · ranks · GradAccum windows.</summary>
    public TrainerOptions Options { get; }

    public ZeroStage Zero { get; }
    public TrainableModel<float> Model { get; }

    /// <summary>The shard layout (ZeRO stages 1–3); null for plain data parallelism.</summary>
    public ZeroPartition? Partition { get; }

    /// <summary>Walks global batches; this rank reads its slice of each.</summary>
    public TokenBatchLoader Loader { get; }

    public TrainingRandom Random { get; }
    public int Ranks => _comm.Size;
    public long Step { get; private set; }

    /// <summary>The buckets of stages 0 and 1 (null otherwise): their launch order shows the overlap with backward.</summary>
    public GradientBuckets? Buckets => _buckets;

    public long TokensPerStep => (long)Options.Batch * Ranks * Options.SequenceLength * Options.GradAccum;

    /// <summary>
    /// A fresh run; every rank draws the same initial weights from the seed (the same draws a single-process
    /// <see cref="Trainer"/> makes), so no broadcast is needed. Collective: every rank of <paramref name="comm"/> calls it.
    /// </summary>
    public static DataParallelTrainer Start(Communicator comm, TrainingConfig config, TrainerOptions options, ZeroStage zero, TokenStream train,
        WorkerPool? pool, int bucketElements = DefaultBucketElements)
    {
        var t = new DataParallelTrainer(comm, config, options, zero, train, pool, bucketElements);
        if (t._sharded?.ShardValues is { } shard)
        {
            // a full model for one moment at start-up (DeepSpeed's zero.Init avoids even that; here Ψ floats are cheap next to training)
            var full = TrainableModel<float>.Create(config, null);
            full.Initialize(t.Random);
            foreach (var s in t.Partition!.Units)
                full.Parameters.Values.AsSpan(s.GlobalOffset, s.Count).CopyTo(shard.AsSpan(s.ShardOffset));
        }
        else
            t.Model.Initialize(t.Random);
        return t;
    }

    /// <summary>
    /// Continues a run from a checkpoint in the single-process layout (whole weights and moments, as
    /// <see cref="GatherState"/> gives and <see cref="Trainer"/> writes): every rank takes its part, whatever the layout
    /// that wrote it. <paramref name="options"/> are per rank (Batch = the checkpoint's batch / ranks); the caller has
    /// checked that they continue the checkpoint's run. Collective.
    /// </summary>
    public static DataParallelTrainer Resume(Communicator comm, TrainingCheckpoint checkpoint, TrainerOptions options, ZeroStage zero, TokenStream train,
        WorkerPool? pool, int bucketElements = DefaultBucketElements)
    {
        var t = new DataParallelTrainer(comm, checkpoint.Config, options, zero, train, pool, bucketElements);
        long count = t.Partition?.ParameterCount ?? t.Model.Parameters.Count;
        if (checkpoint.Weights.Length != count || checkpoint.FirstMoment.Length != count || checkpoint.SecondMoment.Length != count)
            throw new TrainingConfigException($"the checkpoint holds {checkpoint.Weights.Length} parameters, the model {count}");
        if (t._sharded?.ShardValues is { } shardValues)
            t.Scatter(checkpoint.Weights, shardValues);
        else
            checkpoint.Weights.CopyTo(t.Model.Parameters.Values, 0);
        if (t._adam is { } adam)
        {
            checkpoint.FirstMoment.CopyTo(adam.FirstMoment, 0);
            checkpoint.SecondMoment.CopyTo(adam.SecondMoment, 0);
            adam.UpdateCount = checkpoint.UpdateCount;
        }
        else
        {
            t.Scatter(checkpoint.FirstMoment, t._zeroOptimizer!.FirstMoment);
            t.Scatter(checkpoint.SecondMoment, t._zeroOptimizer.SecondMoment);
            t._zeroOptimizer.UpdateCount = checkpoint.UpdateCount;
        }
        t.Random.State = checkpoint.RandomState;
        t.Loader.Position = checkpoint.DataPosition;
        t.Step = checkpoint.Step;
        return t;
    }

    /// <summary>Optimizer updates taken (the bias-correction count a checkpoint carries).</summary>
    public long UpdateCount => _adam?.UpdateCount ?? _zeroOptimizer!.UpdateCount;

    /// <summary>
    /// Collective: weights and both moments in the flat single-process layout on rank <paramref name="root"/> (null on
    /// the others). Where ZeRO shards them, every other rank sends its whole shard to the root, which places each
    /// rank's blocks by that rank's partition: no rank but the root ever holds more than its own states, so a
    /// checkpoint costs ZeRO-3 ranks no memory.
    /// </summary>
    public (float[] Weights, float[] FirstMoment, float[] SecondMoment)? GatherState(int root = 0)
    {
        bool isRoot = _comm.Rank == root;
        float[]? weights = _sharded?.ShardValues is { } shardValues ? GatherShard(shardValues, root, Tag)
            : isRoot ? (float[])Model.Parameters.Values.Clone() : null;
        float[]? first, second;
        if (_adam is { } adam)
            (first, second) = isRoot ? ((float[])adam.FirstMoment.Clone(), (float[])adam.SecondMoment.Clone()) : (null, null);
        else
            (first, second) = (GatherShard(_zeroOptimizer!.FirstMoment, root, Tag + 1), GatherShard(_zeroOptimizer.SecondMoment, root, Tag + 2));
        return isRoot ? (weights!, first!, second!) : null;
    }

    /// <summary>Message tags of <see cref="GatherState"/>'s shards (the trainer's other traffic is collectives).</summary>
    private const int Tag = 0x6B69;

    /// <summary>
    /// Collective: the mean loss over the first batches of a stream, read in order, as a single process with the
    /// global batch reads them: each rank takes its slice of every global batch, and the slice means are averaged.
    /// </summary>
    public double Evaluate(TokenStream stream, int batches)
    {
        int batch = Options.Batch;
        var loader = new TokenBatchLoader(stream, batch * Ranks, Options.SequenceLength, shuffle: false, seed: 0);
        batches = (int)Math.Min(batches, Math.Max(1, loader.Windows / (batch * Ranks)));
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            loader.NextShard(_inputs, _targets, _comm.Rank * batch, batch);
            sum += Model.Forward(_inputs, _targets, batch, Options.SequenceLength);
        }
        return SumOverRanks(sum) / ((double)batches * Ranks);
    }

    /// <summary>Copies this rank's blocks of the flat <paramref name="whole"/> into its shard (padding zero).</summary>
    private void Scatter(float[] whole, float[] shard)
    {
        Array.Clear(shard);
        foreach (var s in Partition!.Units)
            whole.AsSpan(s.GlobalOffset, s.Count).CopyTo(shard.AsSpan(s.ShardOffset));
    }

    /// <summary>Collective: a shard-layout array (S elements per rank) in the flat layout on the root; null elsewhere.</summary>
    private float[]? GatherShard(float[] shard, int root, int tag)
    {
        if (_comm.Rank != root)
        {
            _comm.Send<float>(shard, root, tag);
            return null;
        }
        var all = new float[Partition!.ParameterCount];
        var received = new float[Partition.ShardLength];
        for (int rank = 0; rank < Ranks; rank++)
        {
            float[] from = shard;
            if (rank != root)
            {
                _comm.Receive<float>(received, rank, tag);
                from = received;
            }
            var partition = rank == _comm.Rank ? Partition : new ZeroPartition(Model.Units, Model.Parameters.Tensors, rank, Ranks);
            foreach (var s in partition.Units)
                from.AsSpan(s.ShardOffset, s.Count).CopyTo(all.AsSpan(s.GlobalOffset));
        }
        return all;
    }

    /// <summary>One optimizer step on every rank (collective). Non-finite loss or gradient throws on every rank alike, before any weight changes.</summary>
    public StepResult TrainStep()
    {
        var model = Model;
        int ranks = Ranks, accum = Options.GradAccum, batch = Options.Batch;
        if (_sharded is not null)
            Array.Clear(_sharded.ShardGradients);
        else
            model.ZeroGradients();
        _buckets?.Reset();
        double loss = 0;
        for (int micro = 0; micro < accum; micro++)
        {
            Loader.NextShard(_inputs, _targets, _comm.Rank * batch, batch);
            double local = model.Forward(_inputs, _targets, batch, Options.SequenceLength);
            // averaged before backward so that a diverged rank stops every rank here, not in mid-collective
            double l = SumOverRanks(local) / ranks;
            if (!double.IsFinite(l))
                throw new TrainingDivergedException(Step, $"loss became {l}");
            loss += l;
            if (_buckets is not null)
                _buckets.Armed = micro == accum - 1;
            model.Backward(1.0 / ((double)accum * ranks));
        }
        _buckets?.WaitAll();
        loss /= accum;
        double norm = ClipGlobalNorm();
        if (!double.IsFinite(norm))
            throw new TrainingDivergedException(Step, $"gradient norm became {norm}");
        float lr = _schedule.At(Step);
        switch (Zero)
        {
            case ZeroStage.None:
                _adam!.Update(lr);
                break;
            case ZeroStage.OptimizerStates:
                _zeroOptimizer!.Update(lr, model.Parameters.Values, false, model.Parameters.Gradients, false);
                GatherUpdatedParameters();
                break;
            case ZeroStage.Gradients:
                _zeroOptimizer!.Update(lr, model.Parameters.Values, false, _sharded!.ShardGradients, true);
                GatherUpdatedParameters();
                break;
            default:
                _zeroOptimizer!.Update(lr, _sharded!.ShardValues!, true, _sharded.ShardGradients, true);
                break;
        }
        Step++;
        return new StepResult(Step, loss, norm, lr, TokensPerStep);
    }

    /// <summary>All parameters in the flat layout (collective under stage 3, where they are gathered).</summary>
    public float[] GatherWeights() =>
        _sharded?.ShardValues is not null ? _sharded.GatherValues() : (float[])Model.Parameters.Values.Clone();

    /// <summary>Model-state bytes this rank actually holds: its arrays of parameters, gradients and moments, counted by length.</summary>
    public ModelStateMemory MemoryHeld()
    {
        var p = Model.Parameters;
        long parameters = (p.ValuesAllocated ? p.Count : 0L) + (_sharded?.ShardValues?.Length ?? 0);
        long gradients = (p.GradientsAllocated ? p.Count : 0L) + (_sharded?.ShardGradients.Length ?? 0);
        long moments = _adam is not null ? (long)_adam.FirstMoment.Length + _adam.SecondMoment.Length
            : (long)_zeroOptimizer!.FirstMoment.Length + _zeroOptimizer.SecondMoment.Length;
        return new ModelStateMemory(4 * parameters, 4 * gradients, 4 * moments);
    }

    /// <summary>Working buffers outside the model states: ZeRO's gathered units and unreduced gradients, stage 1/2's gather scratch.</summary>
    public long BufferBytesHeld() => 4L * (_send.Length + _gathered.Length) + (_sharded?.BufferBytes ?? 0);

    /// <summary>The memory ZeRO's formula predicts for this rank (fp32; see <see cref="ModelStateMemory"/>).</summary>
    public ModelStateMemory MemoryExpected() =>
        ModelStateMemory.Expected(Zero, Model.Parameters.Count, Partition?.ShardLength ?? Model.Parameters.Count);

    private double SumOverRanks(double value)
    {
        _scalar[0] = value;
        _comm.AllReduce<double>(_scalar);
        return _scalar[0];
    }

    private double ClipGlobalNorm()
    {
        if (_sharded is null)
            return GradientClipping.Clip(Model.Parameters.Gradients, Options.Clip); // every rank holds the same averaged gradient
        var g = _sharded.ShardGradients;
        double local = 0;
        foreach (float x in g)
            local += (double)x * x; // padding is zero: it adds nothing
        double norm = Math.Sqrt(SumOverRanks(local));
        if (Options.Clip > 0 && norm > Options.Clip && double.IsFinite(norm))
        {
            float scale = (float)(Options.Clip / norm);
            foreach (ref float x in g.AsSpan())
                x *= scale;
        }
        return norm;
    }

    /// <summary>Stages 1 and 2: each rank updated its blocks of the replicated parameters; all-gather them unit by unit.</summary>
    private void GatherUpdatedParameters()
    {
        var values = Model.Parameters.Values;
        foreach (var s in Partition!.Units)
        {
            var send = _send.AsSpan(0, s.BlockLength);
            values.AsSpan(s.GlobalOffset, s.Count).CopyTo(send);
            send[s.Count..].Clear();
            var gathered = _gathered.AsSpan(0, s.PaddedLength(Ranks));
            _comm.AllGather<float>(send, gathered);
            gathered[..s.Unit.Length].CopyTo(values.AsSpan(s.Unit.Offset, s.Unit.Length));
        }
    }
}
