using Kiln.Training.Optimization;

namespace Kiln.Training.Lora;

/// <summary>
/// The finetuning loop: random windows of the token sequence, forward and backward through the frozen base,
/// global-norm clipping, AdamW on the adapter parameters with warm-up and cosine decay.
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
