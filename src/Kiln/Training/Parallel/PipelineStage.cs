using System.Diagnostics;
using Kiln.Distributed;
using Kiln.Threading;
using Kiln.Training.Models;

namespace Kiln.Training.Parallel;

/// <summary>
/// One rank's stage of a pipeline: a contiguous piece of the model (<see cref="ModelPart.Stage"/>) and the runner of
/// its timetable. Each micro-batch in flight (forward done, backward not yet) holds its own activation buffers: a
/// model instance computing on the stage's one set of parameters. Instances are kept between steps and reused, so the
/// activation memory a stage holds is the most micro-batches it ever had in flight times one instance's buffers.
/// Activations go to the next stage and their gradients back to the previous one with non-blocking sends; a receive
/// is posted before the pass ahead of it runs where a buffer is free for it.
/// </summary>
public sealed class PipelineStage
{
    private readonly TrainingConfig _config;
    private readonly WorkerPool? _pool;
    private readonly Recomputation _recompute;
    private readonly Communicator _pipeline;
    private readonly List<Slot> _slots = [];
    private readonly Stack<Slot> _free = new();

    /// <summary>Activation buffers of one micro-batch in flight, and the sends still reading them.</summary>
    private sealed class Slot(TrainableModel<float> model)
    {
        public readonly TrainableModel<float> Model = model;
        public CommRequest? ActivationSend, GradientSend;
        public CommRequest? Receive;

        public void WaitSends()
        {
            ActivationSend?.Wait();
            GradientSend?.Wait();
            ActivationSend = GradientSend = null;
        }
    }

    /// <param name="pipeline">The pipeline group: rank r is stage r.</param>
    /// <param name="tensorParallel">This rank's tensor-parallel group: the stage holds its shard of the stage's layers; null: whole layers.</param>
    public PipelineStage(TrainingConfig config, Communicator pipeline, PipelineSchedule schedule, int microBatches, WorkerPool? pool, Recomputation recompute,
        TensorParallel? tensorParallel = null)
    {
        _config = config;
        _pipeline = pipeline;
        _pool = pool;
        _recompute = recompute;
        Stage = pipeline.Rank;
        Stages = pipeline.Size;
        Part = ModelPart.Stage(config, Stage, Stages);
        MicroBatches = microBatches;
        Timetable = PipelineTimetable.For(schedule, Stage, Stages, microBatches);
        var first = new Slot(TrainableModel<float>.Create(config, pool, recompute, tensorParallel, Part, null));
        _slots.Add(first);
        _free.Push(first);
        Model = first.Model;
        var tied = Model.TiedOutputWeight;
        _peerTiedGradient = tied is not null && Stages > 1 && (IsFirst || IsLast) ? new float[tied.Length] : [];
    }

    /// <summary>The pipeline-group tag of the tied-weight exchange; micro-batch m's exchanges use 2m and 2m + 1, below it.</summary>
    public const int TiedGradientTag = 32766;

    private readonly float[] _peerTiedGradient;

    /// <summary>
    /// A tied weight (GPT-2's wte) lives on the first stage as embedding and on the last as output head: the two swap
    /// their gradients of it and each adds the other's (a + b = b + a bit for bit), so both copies take the same update.
    /// Every other stage, and a model without a tied weight, returns at once.
    /// </summary>
    public void AddTiedGradients()
    {
        if (_peerTiedGradient.Length == 0)
            return;
        int peer = IsFirst ? Stages - 1 : 0;
        var mine = Parameters.Gradient(Model.TiedOutputWeight!);
        var send = _pipeline.SendAsync<float>(mine, peer, TiedGradientTag);
        _pipeline.ReceiveAsync<float>(_peerTiedGradient, peer, TiedGradientTag).Wait();
        send.Wait();
        var g = mine.Span;
        for (int i = 0; i < g.Length; i++)
            g[i] += _peerTiedGradient[i];
    }

    public int Stage { get; }
    public int Stages { get; }
    public int MicroBatches { get; }
    public ModelPart Part { get; }
    public bool IsFirst => Stage == 0;
    public bool IsLast => Stage == Stages - 1;
    public PipelineOperation[] Timetable { get; }

    /// <summary>The stage's first model instance: its <see cref="TrainableModel{T}.Parameters"/> are the stage's.</summary>
    public TrainableModel<float> Model { get; }

    public ParameterSet<float> Parameters => Model.Parameters;

    /// <summary>Activation buffers allocated: instances × bytes each (after the first step).</summary>
    public long ActivationBytesHeld => _slots.Sum(s => s.Model.ActivationBytes);

    // tags: a micro-batch's activations travel under 2m, their gradient under 2m + 1
    private static int ActivationTag(int micro) => 2 * micro;
    private static int GradientTag(int micro) => 2 * micro + 1;

    /// <summary>
    /// Runs the timetable over M micro-batches of <paramref name="batch"/> sequences: the first stage reads
    /// inputs[m], the last targets[m] (the other stages may pass empty arrays). Gradients of
    /// lossScale · (each micro-batch's mean loss) are added to the stage's. Returns the sum of the micro-batches' mean
    /// losses on the last stage, NaN on the others.
    /// </summary>
    public double Run(int[][] inputs, int[][] targets, int batch, int seqLen, double lossScale, out PipelineStepStatistics statistics)
    {
        long start = Stopwatch.GetTimestamp();
        long compute = 0;
        var inFlight = new Slot?[MicroBatches];
        int holding = 0, mostHolding = 0;
        long mostBytes = 0;
        double lossSum = IsLast ? 0 : double.NaN;
        var ops = Timetable;
        for (int i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            int m = op.MicroBatch;
            Slot slot;
            if (!op.IsBackward)
            {
                slot = inFlight[m] ??= Acquire(batch, seqLen);
                holding++;
                mostHolding = Math.Max(mostHolding, holding);
                // every instance of a stage has the same shape, so the micro-batches held are priced at one instance each
                mostBytes = Math.Max(mostBytes, holding * slot.Model.ActivationBytes);
                if (!IsFirst)
                    PostReceive(slot, slot.Model.StageInput, Stage - 1, ActivationTag(m));
            }
            else
            {
                slot = inFlight[m] ?? throw new InvalidOperationException($"stage {Stage}: backward of micro-batch {m} before its forward");
                if (!IsLast)
                    PostReceive(slot, slot.Model.StageOutputGradient, Stage + 1, GradientTag(m));
            }
            slot.Receive?.Wait();
            slot.Receive = null;
            if (i + 1 < ops.Length)
                PostAhead(ops[i + 1], inFlight, batch, seqLen);

            long t0 = Stopwatch.GetTimestamp();
            if (!op.IsBackward)
            {
                double loss = slot.Model.Forward(IsFirst ? inputs[m] : [], IsLast ? targets[m] : [], batch, seqLen);
                compute += Stopwatch.GetTimestamp() - t0;
                if (IsLast)
                    lossSum += loss;
                else
                    slot.ActivationSend = _pipeline.SendAsync(slot.Model.StageOutput, Stage + 1, ActivationTag(m));
            }
            else
            {
                slot.Model.Backward(lossScale);
                compute += Stopwatch.GetTimestamp() - t0;
                if (!IsFirst)
                    slot.GradientSend = _pipeline.SendAsync(slot.Model.StageInputGradient, Stage - 1, GradientTag(m));
                inFlight[m] = null;
                holding--;
                _free.Push(slot);
            }
        }
        foreach (var s in _slots)
            s.WaitSends();
        statistics = new PipelineStepStatistics(Stage, Stopwatch.GetElapsedTime(start).TotalSeconds,
            (double)compute / Stopwatch.Frequency, mostHolding, mostBytes);
        return lossSum;
    }

    /// <summary>Posts the next operation's receive early when its buffer is free: a backward's gradient buffer always is; a
    /// forward's input needs an instance not holding a micro-batch (none is allocated for it: that would add memory).</summary>
    private void PostAhead(PipelineOperation next, Slot?[] inFlight, int batch, int seqLen)
    {
        if (next.IsBackward)
        {
            if (!IsLast && inFlight[next.MicroBatch] is { Receive: null } s)
                PostReceive(s, s.Model.StageOutputGradient, Stage + 1, GradientTag(next.MicroBatch));
        }
        else if (!IsFirst && inFlight[next.MicroBatch] is null && _free.Count > 0)
        {
            var s = inFlight[next.MicroBatch] = Acquire(batch, seqLen);
            PostReceive(s, s.Model.StageInput, Stage - 1, ActivationTag(next.MicroBatch));
        }
    }

    private void PostReceive(Slot slot, Memory<float> buffer, int source, int tag) =>
        slot.Receive ??= _pipeline.ReceiveAsync(buffer, source, tag);

    private Slot Acquire(int batch, int seqLen)
    {
        if (!_free.TryPop(out var slot))
        {
            slot = new Slot(TrainableModel<float>.Create(_config, _pool, _recompute, Model.TensorParallel, Part, Model.Parameters));
            _slots.Add(slot);
        }
        // its buffers are about to be rewritten: the sends of the micro-batch it last held must be done
        slot.WaitSends();
        slot.Model.Prepare(batch, seqLen);
        return slot;
    }
}
