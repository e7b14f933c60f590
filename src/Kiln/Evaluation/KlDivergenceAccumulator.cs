using System.Runtime.InteropServices;

namespace Kiln.Evaluation;

/// <summary>
/// Compares a model's scored logits with a base file chunk by chunk, with llama-perplexity's formulas
/// (its kl_divergence: float log-softmax with a double sum, KL(base ‖ model) over the base tokens whose
/// log-probability is above −16, top-1 agreement, the probability of the right token against the base's).
/// </summary>
public sealed class KlDivergenceAccumulator : IScoredLogitsObserver
{
    private readonly KlDivergenceBaseReader _base;
    private readonly ushort[] _records;
    private readonly List<float> _kld = [];
    private readonly List<float> _probabilityDifferences = [];
    private double _sumNll, _sumNll2, _sumNllBase, _sumNllBase2, _sumNllNllBase;
    private double _sumKld, _sumKld2, _sumPDiff, _sumPDiff2, _sumPDiff4;
    private long _sameTop;

    public KlDivergenceAccumulator(KlDivergenceBaseReader baseFile)
    {
        ArgumentNullException.ThrowIfNull(baseFile);
        _base = baseFile;
        _records = new ushort[baseFile.RowsPerChunk * baseFile.RecordLength];
    }

    public int Count => _kld.Count;

    public void OnChunk(int chunk, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab)
    {
        if (vocab != _base.Vocab)
            throw new InvalidDataException($"the model has {vocab} tokens, the base file {_base.Path} was made with {_base.Vocab}");
        if (targets.Length != _base.RowsPerChunk)
            throw new InvalidDataException($"{targets.Length} scored rows per chunk, the base file has {_base.RowsPerChunk}");
        _base.ReadChunk(_records);
        int nv = _base.RecordLength;
        for (int r = 0; r < targets.Length; r++)
            AddRow(logits.Slice(r * vocab, vocab), _records.AsSpan(r * nv, nv), targets[r]);
    }

    private void AddRow(ReadOnlySpan<float> logits, ReadOnlySpan<ushort> record, int target)
    {
        float max = logits[0];
        int top = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                top = i;
            }
        }
        double sumExp = 0;
        for (int i = 0; i < logits.Length; i++)
            sumExp += MathF.Exp(logits[i] - max);
        float logSumExp = (float)Math.Log(sumExp);
        float scale = MemoryMarshal.Read<float>(MemoryMarshal.AsBytes(record[..2]));
        float minLogProb = MemoryMarshal.Read<float>(MemoryMarshal.AsBytes(record.Slice(2, 2)));
        ReadOnlySpan<ushort> q = record[4..];

        float nll = max + logSumExp - logits[target];
        _sumNll += nll;
        _sumNll2 += nll * nll;
        float nllBase = -(scale * q[target] + minLogProb);
        _sumNllBase += nllBase;
        _sumNllBase2 += nllBase * nllBase;
        _sumNllNllBase += nll * nllBase;

        float logNormalizer = max + logSumExp;
        double kld = 0;
        int baseTop = -1;
        float baseTopLogProb = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float logProbBase = scale * q[i] + minLogProb;
            if (i == 0 || logProbBase > baseTopLogProb)
            {
                baseTopLogProb = logProbBase;
                baseTop = i;
            }
            if (logProbBase > -16f)
                kld += MathF.Exp(logProbBase) * (logProbBase - logits[i] + logNormalizer);
        }
        _sumKld += kld;
        _sumKld2 += kld * kld;
        _kld.Add((float)kld);
        if (top == baseTop)
            _sameTop++;

        float pDiff = MathF.Exp(-nll) - MathF.Exp(-nllBase);
        _sumPDiff += pDiff;
        double pDiff2 = pDiff * pDiff;
        _sumPDiff2 += pDiff2;
        _sumPDiff4 += pDiff2 * pDiff2;
        _probabilityDifferences.Add(pDiff);
    }

    /// <summary>The statistics llama-perplexity prints at the end; needs at least two scored tokens.</summary>
    public KlDivergenceResult Result()
    {
        long n = Count;
        if (n < 2)
            throw new InvalidOperationException($"{n} scored tokens are too few for statistics");
        var logPpl = MeanAndError(_sumNll, _sumNll2, n);
        var logPplBase = MeanAndError(_sumNllBase, _sumNllBase2, n);
        double cov = n < 10 ? 0 : (_sumNllNllBase / n - _sumNll / n * (_sumNllBase / n)) / (n - 1);
        double ppl = Math.Exp(logPpl.Value), pplError = ppl * logPpl.Error;
        double pplBase = Math.Exp(logPplBase.Value), pplBaseError = pplBase * logPplBase.Error;
        double ratioError = Math.Sqrt(logPpl.Error * logPpl.Error + logPplBase.Error * logPplBase.Error - 2 * cov);
        double differenceError = Math.Sqrt(pplError * pplError + pplBaseError * pplBaseError - 2 * ppl * pplBase * cov);

        float[] kld = [.. _kld];
        float[] pDiff = [.. _probabilityDifferences];
        Array.Sort(kld);
        Array.Sort(pDiff);
        var mse = MeanAndError(_sumPDiff2, _sumPDiff4, n);
        double rms = Math.Sqrt(mse.Value);
        double same = (double)_sameTop / n;
        return new KlDivergenceResult(
            (int)n,
            (ppl, pplError),
            (pplBase, pplBaseError),
            cov / (logPpl.Error * logPplBase.Error),
            (logPpl.Value - logPplBase.Value, ratioError),
            (ppl - pplBase, differenceError),
            MeanAndError(_sumKld, _sumKld2, n),
            kld[^1], Percentile(kld, 0.999f), Percentile(kld, 0.99f), Median(kld),
            Percentile(kld, 0.1f), Percentile(kld, 0.05f), Percentile(kld, 0.01f), kld[0],
            MeanAndError(_sumPDiff, _sumPDiff2, n),
            (rms, rms > 0 ? 0.5 / rms * mse.Error : 0),
            pDiff[^1], Median(pDiff), pDiff[0],
            (same, Math.Sqrt(same * (1 - same) / (n - 1))));
    }

    /// <summary>llama.cpp's mean_and_uncertainty: no error estimate below 11 values.</summary>
    private static (double Value, double Error) MeanAndError(double sum, double sum2, long count)
    {
        double mean = sum / count;
        double variance = sum2 / count - mean * mean;
        return (mean, variance > 0 && count > 10 ? Math.Sqrt(variance / (count - 1)) : 0);
    }

    private static double Median(float[] sorted) => sorted.Length % 2 == 0
        ? 0.5f * (sorted[sorted.Length / 2] + sorted[sorted.Length / 2 - 1])
        : sorted[sorted.Length / 2];

    /// <summary>llama.cpp's percentile: linear interpolation between the two nearest ranks.</summary>
    private static double Percentile(float[] sorted, float fraction)
    {
        float p = fraction * (sorted.Length - 1);
        int i = (int)p;
        p -= i;
        return (1 - p) * sorted[i] + p * sorted[Math.Min(i + 1, sorted.Length - 1)];
    }
}
