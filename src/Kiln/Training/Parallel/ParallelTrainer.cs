using System.Diagnostics;
using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Optimization;

namespace Kiln.Training.Parallel;

/// <summary>
/// Training under any layout Dp × Tp × Pp with ZeRO 0 or 1 (3-D parallelism, as Megatron-LM with DeepSpeed's
/// ZeRO-1): each rank is one pipeline stage (<see cref="PipelineStage"/> over the pipeline group) whose layers are
/// this rank's tensor-parallel shard (<see cref="TensorParallel"/> over the tensor-parallel group), replicated over
/// the data-parallel group.
/// <para>
/// A step: the global batch of <see cref="TrainerOptions.Batch"/> windows is read by every rank at the same loader
/// position; dp rank r takes windows [r·B/Dp, (r+1)·B/Dp) and cuts them into the layout's micro-batches, which run
/// through the stages by the schedule with loss scale 1/(M·Dp·GradAccum). Then the stage's gradients are summed over
/// the data-parallel group (one all-reduce of the stage's flat buffer after the schedule: the unit hooks that overlap
/// it with backward serve whole models only), GPT-2's tied wte gradients of first and last stage are added, and the
/// global norm is summed over the world, each gradient element counted once: data-parallel replicas hold the same sums
/// (only dp rank 0 counts), tensor-parallel replicated tensors are the same on every tp rank (only tp rank 0 counts
/// them), and the last stage's copy of a tied weight is skipped; within a pipeline the squares are one running sum in
/// the single-process index order. AdamW then updates the stage's parameters: all of
/// them on every replica (ZeRO 0), or each dp rank its 1/Dp of every unit followed by an all-gather (ZeRO 1).
/// </para>
/// <para>
/// Equal to single-process training with the same options up to summation order (with dp 1 and tp 1, and GPT-2's tied
/// wte aside, the same bits as a single process with batch B/M accumulating M): the loss is the mean of the
/// micro-batch means (equal sizes, so the global mean); gradients are added per micro-batch and replica instead of
/// over the whole batch at once, the tensor-parallel partial products are summed across ranks, and the norm's squares
/// are added in another order. ZeRO 2 and 3 are refused with tensor or pipeline parallelism, as DeepSpeed does for
/// pipelines: their per-unit gradient and parameter hooks exist for whole models only (use
/// <see cref="DataParallelTrainer"/> for pure data parallelism with them).
/// </para>
/// </summary>
public sealed class ParallelTrainer : IDistributedTrainer
{
    // pipeline group: micro-batch m uses tags 2m and 2m + 1 (PipelineStage); these, and PipelineStage.TiedGradientTag
    // (32766), lie above any micro-batch's
    private const int EvaluationTag = 32765;
    private const int NormTag = 32767;

    // world: what a stage sends to rank 0 when gathering a checkpoint
    private const int WeightsTag = 1, FirstMomentTag = 2, SecondMomentTag = 3;

    private readonly ParallelGroups _groups;
    private readonly bool _ownsGroups;
    private readonly TensorParallelSharding _sharding;
    private readonly IReadOnlyList<ParameterTensor> _wholeTensors;
    private readonly int _replicaBatch, _microBatch;
    private readonly int[] _replicaInputs, _replicaTargets;
    private readonly int[][] _inputs, _targets;
    private readonly LearningRateSchedule _schedule;
    private readonly AdamW? _adam;
    private readonly ZeroOptimizer? _zeroOptimizer;
    private readonly float[] _send = [], _gathered = [];
    private readonly double[] _scalar = new double[1];
    private long _communication;

    private ParallelTrainer(ParallelGroups groups, bool ownsGroups, TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool)
    {
        var layout = groups.Layout;
        _groups = groups;
        _ownsGroups = ownsGroups;
        Config = config;
        Options = options;
        TensorParallel = layout.Tp > 1 ? new TensorParallel(groups.TensorParallel, config) : null;
        Stage = new PipelineStage(config, groups.Pipeline, layout.Schedule, layout.MicroBatches, pool, options.Recompute, TensorParallel);
        _sharding = new TensorParallelSharding(TensorParallel?.Layout ?? new TensorParallelLayout(config, 1), Stage.Parameters.Tensors);
        // names and shapes only: the flat buffers of a ParameterSet are allocated on first use
        _wholeTensors = TrainableModel<float>.Create(config, null).Parameters.Tensors;
        _replicaBatch = options.Batch / layout.Dp;
        _microBatch = _replicaBatch / layout.MicroBatches;
        int t = options.SequenceLength;
        Loader = new TokenBatchLoader(train, options.Batch, t, options.Shuffle, options.Seed);
        Random = new TrainingRandom(options.Seed);
        _replicaInputs = new int[_replicaBatch * t];
        _replicaTargets = new int[_replicaBatch * t];
        _inputs = Enumerable.Range(0, layout.MicroBatches).Select(_ => new int[_microBatch * t]).ToArray();
        _targets = Enumerable.Range(0, layout.MicroBatches).Select(_ => new int[_microBatch * t]).ToArray();
        _schedule = options.Schedule;
        if (layout.Zero == 0)
            _adam = new AdamW(Stage.Parameters, options.Adam);
        else
        {
            Partition = new ZeroPartition(StageUnits(Stage.Parameters.Tensors), Stage.Parameters.Tensors, groups.DpRank, layout.Dp);
            _zeroOptimizer = new ZeroOptimizer(Partition, options.Adam);
            int block = 0;
            foreach (var s in Partition.Units)
                block = Math.Max(block, s.BlockLength);
            _send = new float[block];
            _gathered = new float[block * layout.Dp];
        }
    }

    public TrainingConfig Config { get; }
    public TrainerOptions Options { get; }
    public ParallelLayout Layout => _groups.Layout;
    public ParallelGroups Groups => _groups;

    /// <summary>This rank's tensor-parallel group; null when Tp is 1.</summary>
    public TensorParallel? TensorParallel { get; }

    /// <summary>This rank's pipeline stage: its model piece holds the rank's tensor-parallel shard of the stage's layers.</summary>
    public PipelineStage Stage { get; }

    /// <summary>ZeRO-1's split of the stage's parameters over the data-parallel group; null under ZeRO 0.</summary>
    public ZeroPartition? Partition { get; }

    /// <summary>Walks global batches; this rank reads its replica's slice of each.</summary>
    public TokenBatchLoader Loader { get; }

    public TrainingRandom Random { get; }
    public long Step { get; private set; }
    public long TokensPerStep => (long)Options.Batch * Options.SequenceLength * Options.GradAccum;

    public double FlopsPerToken =>
        6.0 * _wholeTensors.Sum(p => (double)p.Length) + 12.0 * Config.Layers * Config.Dim * Options.SequenceLength;

    public ParallelStepTimes LastStepTimes { get; private set; }

    /// <summary>This stage's schedule statistics of the last step's last accumulation round.</summary>
    public PipelineStepStatistics? LastStatistics { get; private set; }

    private long UpdateCount => _adam?.UpdateCount ?? _zeroOptimizer!.UpdateCount;

    /// <summary>
    /// Collective over <paramref name="world"/>: a fresh run whose weights are, piece by piece, those a single-process
    /// <see cref="Trainer.Start"/> draws from the same seed.
    /// </summary>
    public static ParallelTrainer Start(Communicator world, ParallelLayout layout, TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool)
    {
        var t = Create(world, layout, config, options, train, pool);
        t.Stage.Model.Initialize(t.Random);
        return t;
    }

    /// <summary>
    /// Collective: continues a run from a checkpoint in the single-process layout (<see cref="Gather"/>, or
    /// <see cref="Trainer.Save"/>), each rank taking its stage's tensor-parallel shard of the weights and moments.
    /// Every rank passes the same checkpoint. As <see cref="Trainer.Resume"/>, the options that decide which data a
    /// step sees must match the checkpoint's.
    /// </summary>
    public static ParallelTrainer Resume(Communicator world, ParallelLayout layout, TrainingCheckpoint checkpoint, TrainingConfig config, TrainerOptions options,
        TokenStream train, WorkerPool? pool)
    {
        if (checkpoint.Config != config)
            throw new TrainingConfigException($"the checkpoint is of another model configuration:\n{checkpoint.Config.ToJson()}\nnot\n{config.ToJson()}");
        var saved = checkpoint.Options;
        if (saved.Batch != options.Batch || saved.SequenceLength != options.SequenceLength || saved.GradAccum != options.GradAccum
            || saved.Seed != options.Seed || saved.Shuffle != options.Shuffle)
            throw new TrainingConfigException(
                $"the checkpoint was trained with batch {saved.Batch}, sequence {saved.SequenceLength}, grad-accum {saved.GradAccum}, seed {saved.Seed}, shuffle {saved.Shuffle}; resume with the same");
        var t = Create(world, layout, config, options, train, pool);
        t.TakePiece(checkpoint);
        return t;
    }

    private static ParallelTrainer Create(Communicator world, ParallelLayout layout, TrainingConfig config, TrainerOptions options, TokenStream train, WorkerPool? pool)
    {
        config.Validate();
        options.Validate(config);
        Check(layout, config, options, world.Size);
        if (train.VocabSize > config.Vocab)
            throw new TrainingConfigException(
                $"{train.Path} was tokenized with a vocabulary of {train.VocabSize}, larger than the model's vocab of {config.Vocab}");
        var groups = ParallelGroups.Create(world, layout);
        try
        {
            return new ParallelTrainer(groups, ownsGroups: true, config, options, train, pool);
        }
        catch
        {
            groups.Dispose();
            throw;
        }
    }

    /// <summary>Throws <see cref="TrainingConfigException"/> when the layout does not fit the model, the batch or this trainer.</summary>
    public static void Check(ParallelLayout layout, TrainingConfig config, TrainerOptions options, int worldSize)
    {
        if (layout.Zero >= 2)
            throw new TrainingConfigException(layout.Tp > 1 || layout.Pp > 1
                ? $"ZeRO stage {layout.Zero} is not supported with tensor or pipeline parallelism (tp {layout.Tp}, pp {layout.Pp}); use --zero 0 or 1 "
                  + "(DeepSpeed likewise does not combine ZeRO-2/3 with pipeline parallelism)"
                : $"ZeRO stage {layout.Zero} with data parallelism alone is DataParallelTrainer's; this trainer takes --zero 0 or 1");
        if (layout.Dp < 1 || options.Batch % layout.Dp != 0)
            throw new TrainingConfigException($"the global batch of {options.Batch} sequences does not split over {layout.Dp} data-parallel replicas");
        layout.Validate(config, worldSize, options.Batch / layout.Dp);
        if (2 * layout.MicroBatches > EvaluationTag)
            throw new TrainingConfigException($"at most {EvaluationTag / 2} micro-batches (got {layout.MicroBatches})");
    }

    /// <summary>Collective: one optimizer step. Every rank gets the same result; non-finite loss or norm throws on every rank before any weight changes.</summary>
    public StepResult TrainStep()
    {
        long start = Stopwatch.GetTimestamp();
        _communication = -(TensorParallel?.CommunicationTicks ?? 0);
        double idle = 0;
        var layout = Layout;
        var gradients = Stage.Parameters.Gradients;
        Array.Clear(gradients);
        int accum = Options.GradAccum;
        double scale = 1.0 / ((double)layout.MicroBatches * layout.Dp * accum);
        double lossSum = 0;
        for (int a = 0; a < accum; a++)
        {
            ReadReplicaBatch(Loader);
            lossSum += Stage.Run(_inputs, _targets, _microBatch, Options.SequenceLength, scale, out var statistics);
            idle += statistics.IdleSeconds;
            LastStatistics = statistics;
        }
        double loss = SumOverWorld(CountsLoss ? lossSum : 0) / ((double)layout.MicroBatches * layout.Dp * accum);
        if (!double.IsFinite(loss))
            throw new TrainingDivergedException(Step, $"loss became {loss}");
        if (layout.Dp > 1)
            Timed(() => _groups.DataParallel.AllReduce<float>(gradients));
        Timed(Stage.AddTiedGradients); // counted as communication with its addition, a pass over one vocab × dim tensor
        double norm = GlobalGradientNorm();
        if (!double.IsFinite(norm))
            throw new TrainingDivergedException(Step, $"gradient norm became {norm}");
        GradientClipping.ClipTo(gradients, norm, Options.Clip);
        float lr = _schedule.At(Step);
        if (_adam is not null)
            _adam.Update(lr);
        else
        {
            _zeroOptimizer!.Update(lr, Stage.Parameters.Values, false, gradients, false);
            GatherUpdatedParameters();
        }
        Step++;
        _communication += TensorParallel?.CommunicationTicks ?? 0;
        LastStepTimes = new ParallelStepTimes(Stopwatch.GetElapsedTime(start), TimeSpan.FromSeconds((double)_communication / Stopwatch.Frequency),
            TimeSpan.FromSeconds(idle));
        return new StepResult(Step, loss, norm, lr, TokensPerStep);
    }

    /// <summary>The last stage's tp rank 0 of each replica holds a loss that counts; the other copies are the same number.</summary>
    private bool CountsLoss => Stage.IsLast && _groups.TpRank == 0;

    /// <summary>Reads the global batch at the loader's position and cuts this replica's slice into the micro-batches.</summary>
    private void ReadReplicaBatch(TokenBatchLoader loader)
    {
        loader.NextShard(_replicaInputs, _replicaTargets, _groups.DpRank * _replicaBatch, _replicaBatch);
        int length = _microBatch * Options.SequenceLength;
        for (int m = 0; m < _inputs.Length; m++)
        {
            _replicaInputs.AsSpan(m * length, length).CopyTo(_inputs[m]);
            _replicaTargets.AsSpan(m * length, length).CopyTo(_targets[m]);
        }
    }

    /// <summary>
    /// The L2 norm of the whole model's gradient, each element counted once (see the class remarks). Squares are
    /// added in index order as a running sum handed from stage to stage (so with tp 1 the sum is the single
    /// process's, bit for bit), then one all-reduce of a double over the world, to which only the last stage of dp
    /// rank 0 contributes, hands every rank the same bits.
    /// </summary>
    private double GlobalGradientNorm()
    {
        Span<double> running = [0];
        long t0 = Stopwatch.GetTimestamp();
        if (!Stage.IsFirst)
            _groups.Pipeline.Receive(running, Stage.Stage - 1, NormTag);
        _communication += Stopwatch.GetTimestamp() - t0;
        var skip = Stage.Stages > 1 && !Stage.IsFirst ? Stage.Model.TiedOutputWeight : null;
        var rules = _sharding.Layout;
        foreach (var t in Stage.Parameters.Tensors)
            if (t != skip && (_groups.TpRank == 0 || rules.ShardOf(t.Name).Axis != ShardAxis.Replicated))
                running[0] = GradientClipping.SumOfSquares(Stage.Parameters.Gradient(t).Span, running[0]);
        t0 = Stopwatch.GetTimestamp();
        if (!Stage.IsLast)
            _groups.Pipeline.Send<double>(running, Stage.Stage + 1, NormTag);
        _communication += Stopwatch.GetTimestamp() - t0;
        return Math.Sqrt(SumOverWorld(Stage.IsLast && _groups.DpRank == 0 ? running[0] : 0));
    }

    /// <summary>ZeRO-1: each dp rank updated its blocks of the stage's parameters; all-gather them unit by unit.</summary>
    private void GatherUpdatedParameters()
    {
        var values = Stage.Parameters.Values;
        foreach (var s in Partition!.Units)
            GatherUnit(values, values, s, s.GlobalOffset);
    }

    /// <summary>All-gathers one unit over the dp group: rank r's block comes from <paramref name="source"/> at its offset, the whole unit lands in <paramref name="target"/>.</summary>
    private void GatherUnit(float[] source, float[] target, ZeroPartition.UnitShard s, int sourceOffset)
    {
        var send = _send.AsSpan(0, s.BlockLength);
        source.AsSpan(sourceOffset, s.Count).CopyTo(send);
        send[s.Count..].Clear();
        var gathered = _gathered.AsSpan(0, s.PaddedLength(Layout.Dp));
        long t0 = Stopwatch.GetTimestamp();
        _groups.DataParallel.AllGather<float>(send, gathered);
        _communication += Stopwatch.GetTimestamp() - t0;
        gathered[..s.Unit.Length].CopyTo(target.AsSpan(s.Unit.Offset, s.Unit.Length));
    }

    /// <summary>Collective: the mean loss over the first batches of a stream, through the pipeline (forward only); the same on every rank.</summary>
    public double Evaluate(TokenStream stream, int batches)
    {
        var loader = new TokenBatchLoader(stream, Options.Batch, Options.SequenceLength, shuffle: false, seed: 0);
        batches = (int)Math.Min(batches, Math.Max(1, loader.Windows / Options.Batch));
        var model = Stage.Model;
        var pipeline = _groups.Pipeline;
        int seq = Options.SequenceLength;
        double sum = 0;
        for (int i = 0; i < batches; i++)
        {
            ReadReplicaBatch(loader);
            for (int m = 0; m < _inputs.Length; m++)
            {
                model.Prepare(_microBatch, seq);
                if (!Stage.IsFirst)
                    pipeline.Receive(model.StageInput.Span, Stage.Stage - 1, EvaluationTag);
                double loss = model.Forward(Stage.IsFirst ? _inputs[m] : [], Stage.IsLast ? _targets[m] : [], _microBatch, seq);
                if (Stage.IsLast)
                    sum += loss;
                else
                    pipeline.Send(model.StageOutput.Span, Stage.Stage + 1, EvaluationTag);
            }
        }
        return SumOverWorld(CountsLoss ? sum : 0) / ((double)batches * _inputs.Length * Layout.Dp);
    }

    /// <summary>
    /// Collective: the whole run's state on world rank 0. Dp rank 0 of each stage and tp rank gathers its shard's
    /// moments (ZeRO-1: over the dp group first), the tp group reassembles the stage's whole tensors, and each stage's
    /// tp rank 0 sends them to world rank 0, which places them by name in the single-process layout.
    /// </summary>
    public TrainingCheckpoint? Gather()
    {
        var p = Stage.Parameters;
        float[] first, second;
        if (_adam is not null)
            (first, second) = (_adam.FirstMoment, _adam.SecondMoment);
        else
        {
            first = new float[p.Count];
            second = new float[p.Count];
            foreach (var s in Partition!.Units)
            {
                GatherUnit(_zeroOptimizer!.FirstMoment, first, s, s.ShardOffset);
                GatherUnit(_zeroOptimizer.SecondMoment, second, s, s.ShardOffset);
            }
        }
        if (_groups.DpRank != 0)
            return null; // its replica's states are dp rank 0's
        float[][] stage = [WholeStage(p.Values), WholeStage(first), WholeStage(second)];
        var world = _groups.World;
        int[] tags = [WeightsTag, FirstMomentTag, SecondMomentTag];
        if (_groups.TpRank != 0)
            return null;
        if (world.Rank != 0)
        {
            for (int i = 0; i < 3; i++)
                world.Send<float>(stage[i], 0, tags[i]);
            return null;
        }
        var whole = new float[3][];
        for (int i = 0; i < 3; i++)
            whole[i] = new float[_wholeTensors.Sum(t => t.Length)];
        for (int s = 0; s < Stage.Stages; s++)
        {
            var tensors = s == 0 ? _sharding.FullTensors : StageTensors(s);
            int count = tensors.Sum(t => t.Length);
            for (int i = 0; i < 3; i++)
            {
                var buffer = s == 0 ? stage[i] : new float[count];
                if (s > 0)
                    world.Receive<float>(buffer, Layout.RankOf(0, 0, s), tags[i]);
                CopyByName(tensors, buffer, whole[i], toWhole: true);
            }
        }
        return new TrainingCheckpoint
        {
            Config = Config,
            Options = Options,
            Step = Step,
            UpdateCount = UpdateCount,
            RandomState = Random.State,
            DataPosition = Loader.Position,
            Weights = whole[0],
            FirstMoment = whole[1],
            SecondMoment = whole[2],
        };
    }

    /// <summary>Collective: <see cref="Gather"/>, then rank 0 writes the checkpoint atomically.</summary>
    public void Save(string path) => Gather()?.Write(path);

    public ModelStateMemory MemoryHeld()
    {
        long count = Stage.Parameters.Count;
        long moments = _adam is not null ? (long)_adam.FirstMoment.Length + _adam.SecondMoment.Length
            : (long)_zeroOptimizer!.FirstMoment.Length + _zeroOptimizer.SecondMoment.Length;
        return new ModelStateMemory(4 * count, 4 * count, 4 * moments);
    }

    public void Dispose()
    {
        if (_ownsGroups)
            _groups.Dispose();
    }

    /// <summary>The tp group's shards of a stage buffer reassembled into the stage's whole tensors (collective over the tp group).</summary>
    private float[] WholeStage(float[] shard)
    {
        var whole = new float[_sharding.FullCount];
        if (Layout.Tp == 1)
            shard.AsSpan(0, whole.Length).CopyTo(whole);
        else
        {
            long t0 = Stopwatch.GetTimestamp();
            _sharding.AllGather<float>(_groups.TensorParallel, shard, whole);
            _communication += Stopwatch.GetTimestamp() - t0;
        }
        return whole;
    }

    /// <summary>Takes this rank's piece of a single-process checkpoint: its stage's tensors, then its tp shard of them.</summary>
    private void TakePiece(TrainingCheckpoint checkpoint)
    {
        int wholeCount = _wholeTensors.Sum(t => t.Length);
        if (checkpoint.Weights.Length != wholeCount || checkpoint.FirstMoment.Length != wholeCount || checkpoint.SecondMoment.Length != wholeCount)
            throw new TrainingConfigException($"the checkpoint holds {checkpoint.Weights.Length} parameters, the model {wholeCount}");
        var p = Stage.Parameters;
        var stage = new float[_sharding.FullCount];
        var moment = new float[p.Count];
        CopyByName(_sharding.FullTensors, stage, checkpoint.Weights, toWhole: false);
        _sharding.Shard<float>(stage, p.Values, TensorParallel?.Rank ?? 0);
        (float[] Whole, float[]? Adam, float[]? Zero)[] moments =
        [
            (checkpoint.FirstMoment, _adam?.FirstMoment, _zeroOptimizer?.FirstMoment),
            (checkpoint.SecondMoment, _adam?.SecondMoment, _zeroOptimizer?.SecondMoment),
        ];
        foreach (var (whole, adam, zero) in moments)
        {
            CopyByName(_sharding.FullTensors, stage, whole, toWhole: false);
            _sharding.Shard<float>(stage, adam ?? moment, TensorParallel?.Rank ?? 0);
            if (zero is not null)
                foreach (var s in Partition!.Units)
                    moment.AsSpan(s.GlobalOffset, s.Count).CopyTo(zero.AsSpan(s.ShardOffset));
        }
        if (_adam is not null)
            _adam.UpdateCount = checkpoint.UpdateCount;
        else
            _zeroOptimizer!.UpdateCount = checkpoint.UpdateCount;
        Random.State = checkpoint.RandomState;
        Loader.Position = checkpoint.DataPosition;
        Step = checkpoint.Step;
    }

    /// <summary>Copies each of a stage's whole tensors between its stage buffer and the single-process buffer, matched by name.</summary>
    private void CopyByName(IReadOnlyList<ParameterTensor> stageTensors, float[] stage, float[] whole, bool toWhole)
    {
        foreach (var t in stageTensors)
        {
            var w = _wholeTensors.First(x => x.Name == t.Name);
            if (toWhole)
                stage.AsSpan(t.Offset, t.Length).CopyTo(whole.AsSpan(w.Offset, w.Length));
            else
                whole.AsSpan(w.Offset, w.Length).CopyTo(stage.AsSpan(t.Offset, t.Length));
        }
    }

    /// <summary>Stage s's tensors with whole (not tensor-parallel) shapes, in its declaration order: names and shapes only, nothing allocated.</summary>
    private IReadOnlyList<ParameterTensor> StageTensors(int stage) =>
        TrainableModel<float>.Create(Config, null, Recomputation.None, null, ModelPart.Stage(Config, stage, Stage.Stages), null).Parameters.Tensors;

    /// <summary>
    /// ZeRO units of a stage's buffer: runs of consecutive tensors of one block ("blk.N." / "h.N."), or of the
    /// embedding or head tensors around them. (<see cref="ParameterUnit.Partition"/> expects every block of the whole model.)
    /// </summary>
    private static ParameterUnit[] StageUnits(IReadOnlyList<ParameterTensor> tensors)
    {
        var units = new List<ParameterUnit>();
        int start = 0;
        for (int i = 1; i <= tensors.Count; i++)
        {
            if (i < tensors.Count && UnitKey(tensors[i].Name) == UnitKey(tensors[i - 1].Name))
                continue;
            int offset = tensors[start].Offset, end = tensors[i - 1].Offset + tensors[i - 1].Length;
            units.Add(new ParameterUnit(units.Count, UnitKey(tensors[start].Name), offset, end - offset));
            start = i;
        }
        return units.ToArray();
    }

    private static string UnitKey(string name)
    {
        var parts = name.Split('.');
        return parts.Length >= 3 && int.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out _) ? $"{parts[0]}.{parts[1]}" : "";
    }

    private double SumOverWorld(double value)
    {
        _scalar[0] = value;
        long t0 = Stopwatch.GetTimestamp();
        _groups.World.AllReduce<double>(_scalar);
        _communication += Stopwatch.GetTimestamp() - t0;
        return _scalar[0];
    }

    private void Timed(Action action)
    {
        long t0 = Stopwatch.GetTimestamp();
        action();
        _communication += Stopwatch.GetTimestamp() - t0;
    }
}
