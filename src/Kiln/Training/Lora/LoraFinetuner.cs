using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Kiln.Models.Lora;
using Kiln.Training.Checkpoints;
using Kiln.Training.Optimization;

namespace Kiln.Training.Lora;

/// <summary>
/// The finetuning loop: random windows of the token sequence, forward and backward through the frozen base,
/// global-norm clipping, AdamW on the adapter parameters with warm-up and cosine decay. Every input to a step
/// (adapters, moments, update count, step, RNG state) goes into <see cref="Snapshot"/>, and the step is deterministic
/// for any thread count, so <see cref="Restore"/> continues a run bit-identically.
/// </summary>
public sealed class LoraFinetuner
{
    private readonly ReadOnlyMemory<int> _tokens;
    private readonly int[] _inputs, _targets;
    private readonly TrainingRandom _random;

    public LoraFinetuner(LoraLlamaModel model, LoraFinetuneOptions options, ReadOnlyMemory<int> tokens)
    {
        if (options.Batch < 1 || options.SequenceLength < 1 || options.Steps < 1)
            throw new TrainingConfigException($"batch {options.Batch}, sequence {options.SequenceLength} and steps {options.Steps} must be at least 1");
        if (options.SequenceLength > model.Config.ContextLength)
            throw new TrainingConfigException($"sequence length {options.SequenceLength} exceeds the model's context of {model.Config.ContextLength}");
        if (tokens.Length < options.SequenceLength + 1)
            throw new TrainingConfigException($"the data holds {tokens.Length} tokens; a sequence of {options.SequenceLength} needs at least {options.SequenceLength + 1}");
        foreach (int t in tokens.Span)
            if ((uint)t >= (uint)model.Config.VocabSize)
                throw new TrainingConfigException($"the data holds token id {t}, outside the base model's vocabulary of {model.Config.VocabSize} (tokenized for another model?)");
        Model = model;
        Options = options;
        Optimizer = new AdamW(model.Parameters, options.Adam);
        _tokens = tokens;
        _inputs = new int[options.Batch * options.SequenceLength];
        _targets = new int[_inputs.Length];
        _random = new TrainingRandom(options.Seed);
    }

    public LoraLlamaModel Model { get; }
    public LoraFinetuneOptions Options { get; }
    public AdamW Optimizer { get; }
    public long Step { get; private set; }

    /// <summary>The training tokens' identity (SHA-256 of the int32 ids), so a resume on other data is refused.</summary>
    public string DataSha256 => Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(_tokens.Span)));

    /// <summary>Targets of the adapter as short names in their fixed order.</summary>
    private string Targets => string.Join(",", Model.Adapter.Weights.Select(w => w.Target).Distinct().Order().Select(LoraTargetNames.ShortName));

    public LoraCheckpoint Snapshot(string baseModel, long baseBytes) => new()
    {
        BaseModel = baseModel,
        BaseBytes = baseBytes,
        Rank = Model.Adapter.Rank,
        Alpha = Model.Adapter.Alpha,
        Targets = Targets,
        Options = Options,
        DataSha256 = DataSha256,
        Step = Step,
        UpdateCount = Optimizer.UpdateCount,
        RandomState = _random.State,
        Weights = (float[])Model.Parameters.Values.Clone(),
        FirstMoment = (float[])Optimizer.FirstMoment.Clone(),
        SecondMoment = (float[])Optimizer.SecondMoment.Clone(),
    };

    /// <summary>
    /// Continues a saved run: the adapter (rank, alpha, targets), the data and the options that decide which windows a
    /// step sees (batch, sequence, seed) must be the checkpoint's; steps, rates and clipping may change. The base
    /// model's identity (name, size) is the caller's to check: the finetuner sees only its weights.
    /// </summary>
    public void Restore(LoraCheckpoint checkpoint)
    {
        if (checkpoint.Rank != Model.Adapter.Rank || checkpoint.Alpha != Model.Adapter.Alpha || checkpoint.Targets != Targets)
            throw new TrainingConfigException(
                $"the checkpoint trains rank {checkpoint.Rank}, alpha {checkpoint.Alpha}, targets {checkpoint.Targets}; resume with the same (not rank {Model.Adapter.Rank}, alpha {Model.Adapter.Alpha}, targets {Targets})");
        var saved = checkpoint.Options;
        if (saved.Batch != Options.Batch || saved.SequenceLength != Options.SequenceLength || saved.Seed != Options.Seed)
            throw new TrainingConfigException(
                $"the checkpoint was trained with batch {saved.Batch}, sequence {saved.SequenceLength}, seed {saved.Seed}; resume with the same");
        if (checkpoint.DataSha256 != DataSha256)
            throw new TrainingConfigException("the checkpoint was trained on other data (the token ids differ); resume with the same --data");
        if (checkpoint.Weights.Length != Model.Parameters.Count)
            throw new TrainingConfigException($"the checkpoint holds {checkpoint.Weights.Length} adapter parameters, the model {Model.Parameters.Count}");
        checkpoint.Weights.CopyTo(Model.Parameters.Values, 0);
        checkpoint.FirstMoment.CopyTo(Optimizer.FirstMoment, 0);
        checkpoint.SecondMoment.CopyTo(Optimizer.SecondMoment, 0);
        Optimizer.UpdateCount = checkpoint.UpdateCount;
        _random.State = checkpoint.RandomState;
        Step = checkpoint.Step;
    }

    public StepResult TrainStep()
    {
        int seq = Options.SequenceLength;
        var data = _tokens.Span;
        for (int b = 0; b < Options.Batch; b++)
        {
            int start = _random.NextInt(data.Length - seq);
            data.Slice(start, seq).CopyTo(_inputs.AsSpan(b * seq, seq));
            data.Slice(start + 1, seq).CopyTo(_targets.AsSpan(b * seq, seq));
        }
        Array.Clear(Model.Parameters.Gradients);
        double loss = Model.Forward(_inputs, _targets, Options.Batch, seq);
        if (!double.IsFinite(loss))
            throw new TrainingDivergedException(Step, $"loss became {loss}");
        Model.Backward();
        double norm = GradientClipping.Clip(Model.Parameters.Gradients, Options.Clip);
        if (!double.IsFinite(norm))
            throw new TrainingDivergedException(Step, $"gradient norm became {norm}");
        float lr = Options.Schedule.At(Step);
        Optimizer.Update(lr);
        Step++;
        return new StepResult(Step, loss, norm, lr, _inputs.Length);
    }
}
