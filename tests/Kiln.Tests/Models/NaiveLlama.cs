using Kiln.Tests.TestSupport;

namespace Kiln.Tests.Models;

/// <summary>
/// An independent, deliberately plain Llama forward pass in double precision (whole sequence at
/// once, no cache, no SIMD), written from the architecture's definition to check Kiln's optimized one.
/// </summary>
internal static class NaiveLlama
{
    public static double[][] Logits(RandomLlama m, int[] tokens)
    {
        var W = m.Weights;
        int T = tokens.Length, D = m.Dim, hd = m.HeadDim, H = m.Heads, KH = m.KvHeads, F = m.Ffn;
        bool neox = m.Architecture == "qwen2";
        double freqScale = m.RopeLinearFactor is { } f ? 1.0 / f : 1.0;

        // ggml multiplies Q8_0/Q4_0 weights with activations rounded through Q8_0; model that rounding
        // (with the reference quantizer, itself checked byte-for-byte against llama.cpp's files).
        bool quantizedActivations = m.WeightType is Kiln.Tensors.GgmlType.Q8_0 or Kiln.Tensors.GgmlType.Q4_0;
        double[] MatVec(string name, double[] x, int rows)
        {
            var w = W[name];
            int cols = x.Length;
            if (quantizedActivations)
            {
                var xf = x.Select(v => (float)v).ToArray();
                var q = new byte[cols / 32 * 34];
                Kiln.Tensors.Q8_0.QuantizeScalar(xf, q);
                Kiln.Tensors.Q8_0.DequantizeScalar(q, xf);
                x = xf.Select(v => (double)v).ToArray();
            }
            var y = new double[rows];
            for (int r = 0; r < rows; r++)
            {
                double s = 0;
                for (int c = 0; c < cols; c++)
                    s += w[r * cols + c] * x[c];
                y[r] = s;
            }
            return y;
        }
        double[] Norm(double[] x, string weight)
        {
            var w = W[weight];
            double ms = x.Select(v => v * v).Average();
            double scale = 1 / Math.Sqrt(ms + 1e-5);
            return x.Select((v, i) => v * scale * w[i]).ToArray();
        }
        void Rope(double[] v, int heads, int pos)
        {
            for (int h = 0; h < heads; h++)
            {
                for (int i = 0; i < hd / 2; i++)
                {
                    double angle = pos * freqScale * Math.Pow(m.RopeBase, -2.0 * i / hd);
                    int a = h * hd + (neox ? i : 2 * i), b = h * hd + (neox ? i + hd / 2 : 2 * i + 1);
                    double x0 = v[a], x1 = v[b];
                    v[a] = x0 * Math.Cos(angle) - x1 * Math.Sin(angle);
                    v[b] = x0 * Math.Sin(angle) + x1 * Math.Cos(angle);
                }
            }
        }
        void AddBias(double[] v, string name)
        {
            if (W.TryGetValue(name, out var b))
                for (int i = 0; i < v.Length; i++) v[i] += b[i];
        }

        var x = tokens.Select(t => W["token_embd.weight"].Skip(t * D).Take(D).Select(v => (double)v).ToArray()).ToArray();
        for (int l = 0; l < m.Layers; l++)
        {
            string p = $"blk.{l}.";
            var q = new double[T][]; var k = new double[T][]; var v = new double[T][];
            for (int t = 0; t < T; t++)
            {
                var xn = Norm(x[t], p + "attn_norm.weight");
                q[t] = MatVec(p + "attn_q.weight", xn, H * hd); AddBias(q[t], p + "attn_q.bias");
                k[t] = MatVec(p + "attn_k.weight", xn, KH * hd); AddBias(k[t], p + "attn_k.bias");
                v[t] = MatVec(p + "attn_v.weight", xn, KH * hd); AddBias(v[t], p + "attn_v.bias");
                Rope(q[t], H, t);
                Rope(k[t], KH, t);
            }
            for (int t = 0; t < T; t++)
            {
                var att = new double[H * hd];
                for (int h = 0; h < H; h++)
                {
                    int kh = h / (H / KH);
                    var s = new double[t + 1];
                    for (int j = 0; j <= t; j++)
                    {
                        for (int d = 0; d < hd; d++)
                            s[j] += q[t][h * hd + d] * k[j][kh * hd + d];
                        s[j] /= Math.Sqrt(hd);
                    }
                    double max = s.Max();
                    var e = s.Select(z => Math.Exp(z - max)).ToArray();
                    double sum = e.Sum();
                    for (int j = 0; j <= t; j++)
                        for (int d = 0; d < hd; d++)
                            att[h * hd + d] += e[j] / sum * v[j][kh * hd + d];
                }
                var o = MatVec(p + "attn_output.weight", att, D);
                for (int i = 0; i < D; i++) x[t][i] += o[i];
                var xn = Norm(x[t], p + "ffn_norm.weight");
                var g = MatVec(p + "ffn_gate.weight", xn, F);
                var u = MatVec(p + "ffn_up.weight", xn, F);
                var hdn = g.Select((z, i) => z / (1 + Math.Exp(-z)) * u[i]).ToArray();
                var down = MatVec(p + "ffn_down.weight", hdn, D);
                for (int i = 0; i < D; i++) x[t][i] += down[i];
            }
        }
        string output = W.ContainsKey("output.weight") ? "output.weight" : "token_embd.weight";
        return x.Select(row => MatVec(output, Norm(row, "output_norm.weight"), m.Vocab)).ToArray();
    }
}
