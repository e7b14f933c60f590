using System.Globalization;
using System.Text;
using Kiln.Formats.Gguf;
using Kiln.Models.Lora;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Tests.TestSupport;
using Kiln.Tokenizers;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Export;

namespace Kiln.Tests.Training;

/// <summary>
/// What llama.cpp requires of the files Kiln writes, written out from llama.cpp's loader (ggml-org/llama.cpp:
/// src/llama-model-loader.cpp, src/llama-model.cpp, src/llama-vocab.cpp, src/llama-adapter.cpp) since no llama.cpp
/// binary runs here: metadata keys with the GGUF types llama.cpp's typed getters demand, the exact tensor set and
/// shapes of LLM_ARCH_LLAMA, a vocabulary its tokenizers can load, tokenize any text with and detokenize back, and
/// the LoRA adapter checks. The checker returns the problems it finds, so the tests can also show it failing.
/// </summary>
public sealed class LlamaCppCompatibilityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-llamacpp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>Text with every kind of character a prompt may hold: the vocabulary's, digits, accents, a symbol outside the BMP.</summary>
    private const string Probe = "First Citizen:\nBefore we proceed any further, hear me speak.\n 1234567890 café € 𝄞 ~^";

    private string ExportCharModel(GgmlType type)
    {
        var tok = CharacterTokenizer.FromText("First Citizen:\nBefore we proceed any further, hear me speak.\nAll: Speak, speak.\n");
        var config = new TrainingConfig { Family = ModelFamily.Llama, Layers = 2, Dim = 64, Heads = 4, KvHeads = 2, Ffn = 96, Vocab = tok.VocabSize + 2, Context = 32 };
        var model = new Kiln.Training.Models.LlamaTrainModel<float>(config, null);
        model.Initialize(new TrainingRandom(3));
        string path = P($"char-{type}.gguf");
        LlamaGgufExporter.Export(config, model.Parameters.Values, tok, path, type);
        return path;
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.Q8_0)]
    public void CharacterLevelExportMeetsLlamaCppsRules(GgmlType type)
    {
        string path = ExportCharModel(type);
        Assert.Empty(LlamaCppRules.CheckModel(path, Probe));
    }

    [Fact]
    public void BytePairExportMeetsLlamaCppsRules()
    {
        var tok = BytePairVocabularyTrainer.Train([string.Concat(Enumerable.Repeat("the cat sat on the mat. the hat is flat.\n", 30))], 300);
        var config = new TrainingConfig { Family = ModelFamily.Llama, Layers = 1, Dim = 32, Heads = 2, Vocab = tok.VocabSize + 3, Context = 16 };
        var model = new Kiln.Training.Models.LlamaTrainModel<float>(config, null);
        model.Initialize(new TrainingRandom(4));
        string path = P("bpe.gguf");
        LlamaGgufExporter.Export(config, model.Parameters.Values, tok, path, GgmlType.F16);
        Assert.Empty(LlamaCppRules.CheckModel(path, Probe));
    }

    /// <summary>The model in models/ that run, chat and serve load by default.</summary>
    [Fact]
    public void BuiltInModelMeetsLlamaCppsRules()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Kiln.slnx")))
            dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        string path = Path.Combine(dir, "models", "kiln-shakespeare-q8_0.gguf");
        Assert.Empty(LlamaCppRules.CheckModel(path, Probe + " ROMEO: O, she doth teach the torches to burn bright!"));
    }

    [Fact]
    public void LoraAdapterMeetsLlamaCppsRules()
    {
        var spec = new RandomLlama();
        string basePath = spec.Write(P("base.gguf"));
        using (var model = LlamaModel.Load(basePath))
            LoraAdapter.Create(model.Config, 3, 6, LoraTargetNames.All, 1).Save(P("adapter.gguf"));
        Assert.Empty(LlamaCppRules.CheckAdapter(P("adapter.gguf"), basePath));
    }

    /// <summary>The checker is not vacuous: a character vocabulary without byte-fallback tokens, a key of the wrong type, a missing tensor, a transposed adapter.</summary>
    [Fact]
    public void TheCheckerFindsWhatLlamaCppWouldRefuse()
    {
        string good = ExportCharModel(GgmlType.F32);
        using (var file = GgufFile.Open(good))
        {
            // the same file without its <0xNN> tokens (and with 32-bit signed ids, a missing tensor)
            var w = new GgufWriter();
            foreach (var (key, value) in file.MetadataList)
            {
                if (key == "tokenizer.ggml.tokens")
                    w.SetMetadata(key, GgufValue.FromArray(GgufArray.Of(value.AsArray().AsStrings().Where(t => !t.StartsWith("<0x", StringComparison.Ordinal)).ToArray())));
                else if (key == "llama.block_count")
                    w.SetMetadata(key, GgufValue.FromInt32((int)value.AsInt64()));
                else
                    w.SetMetadata(key, value);
            }
            foreach (var t in file.Tensors.Where(t => t.Name != "blk.1.ffn_up.weight"))
                w.AddTensor(t.Name, t.Type, t.Dimensions, file.GetTensorBytes(t).ToArray());
            w.Write(P("bad.gguf"));
        }
        var problems = LlamaCppRules.CheckModel(P("bad.gguf"), Probe);
        Assert.Contains(problems, p => p.Contains("llama.block_count") && p.Contains("uint32"));
        Assert.Contains(problems, p => p.Contains("byte_to_token") && p.Contains("0x31"));
        Assert.Contains(problems, p => p.Contains("blk.1.ffn_up.weight") && p.Contains("missing"));
        Assert.Contains(problems, p => p.Contains("token_embd.weight") && p.Contains("n_vocab"));

        var spec = new RandomLlama();
        string basePath = spec.Write(P("base.gguf"));
        var w2 = new GgufWriter();
        w2.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        w2.SetMetadata("general.type", GgufValue.FromString("adapter"));
        w2.SetMetadata("adapter.type", GgufValue.FromString("lora"));
        w2.SetMetadata("adapter.lora.alpha", GgufValue.FromFloat64(4));
        w2.AddTensor("blk.0.attn_q.weight.lora_a", GgmlType.F32, [2, spec.Dim], new byte[2 * spec.Dim * 4]);
        w2.AddTensor("blk.0.attn_q.weight.lora_b", GgmlType.F32, [2, spec.Dim], new byte[2 * spec.Dim * 4]);
        w2.Write(P("bad-adapter.gguf"));
        var adapterProblems = LlamaCppRules.CheckAdapter(P("bad-adapter.gguf"), basePath);
        Assert.Contains(adapterProblems, p => p.Contains("adapter.lora.alpha"));
        Assert.Contains(adapterProblems, p => p.Contains("incorrect shape"));
    }

    /// <summary>llama.cpp's rules, each with the source it comes from.</summary>
    private static class LlamaCppRules
    {
        public static List<string> CheckModel(string path, string probe)
        {
            var problems = new List<string>();
            using var file = GgufFile.Open(path);
            var md = file.Metadata;

            // llama-model-loader.cpp, GGUFMeta::GKV<T>::get_kv → validate_type: a key read into a uint32_t/float/bool/
            // string must have exactly that GGUF type ("key %s has wrong type %s but expected type %s").
            void Typed(string key, GgufValueType type, bool required)
            {
                if (!md.TryGetValue(key, out var v))
                {
                    if (required)
                        problems.Add($"{key}: missing (required)");
                }
                else if (v.Type != type)
                {
                    problems.Add($"{key}: has type {v.TypeName}, llama.cpp reads it as {type.ToString().ToLowerInvariant()}");
                }
            }
            Typed("general.architecture", GgufValueType.String, true);
            if (md.TryGetValue("general.architecture", out var arch) && arch.Type == GgufValueType.String && arch.AsString() != "llama")
                problems.Add($"general.architecture is '{arch.AsString()}', this check knows LLM_ARCH_LLAMA only");
            Typed("general.alignment", GgufValueType.UInt32, false);
            Typed("general.file_type", GgufValueType.UInt32, false);
            // llama-model.cpp, llama_model::load_hparams: the common keys, then LLM_ARCH_LLAMA's RMS epsilon
            Typed("llama.context_length", GgufValueType.UInt32, true);
            Typed("llama.embedding_length", GgufValueType.UInt32, true);
            Typed("llama.block_count", GgufValueType.UInt32, true);
            Typed("llama.feed_forward_length", GgufValueType.UInt32, true); // get_key_or_arr: a scalar (or a per-layer array)
            Typed("llama.attention.head_count", GgufValueType.UInt32, true);
            Typed("llama.attention.head_count_kv", GgufValueType.UInt32, false);
            Typed("llama.attention.layer_norm_rms_epsilon", GgufValueType.Float32, true);
            Typed("llama.rope.freq_base", GgufValueType.Float32, false);
            Typed("llama.rope.dimension_count", GgufValueType.UInt32, false);
            Typed("llama.vocab_size", GgufValueType.UInt32, false);
            if (problems.Count > 0 && !md.ContainsKey("llama.embedding_length"))
                return problems;
            long Int(string key, long fallback) => md.TryGetValue(key, out var v) && v.IsInteger ? v.AsInt64() : fallback;
            long nEmbd = Int("llama.embedding_length", 0), nLayer = Int("llama.block_count", 0), nFf = Int("llama.feed_forward_length", 0);
            long nHead = Int("llama.attention.head_count", 1), nHeadKv = Int("llama.attention.head_count_kv", nHead);
            long headDim = nEmbd / nHead;
            // load_hparams: for LLM_ARCH_LLAMA n_rot must equal n_embd_head_k ("invalid n_rot")
            if (Int("llama.rope.dimension_count", headDim) != headDim)
                problems.Add($"llama.rope.dimension_count {Int("llama.rope.dimension_count", 0)} ≠ head dimension {headDim}");

            // llama-vocab.cpp, llama_vocab::impl::load
            string[] tokens = CheckVocabulary(file, problems, probe);
            long nVocab = tokens.Length;
            if (md.ContainsKey("llama.vocab_size") && Int("llama.vocab_size", 0) != nVocab)
                problems.Add($"llama.vocab_size {Int("llama.vocab_size", 0)} ≠ {nVocab} tokens");

            // llama-model.cpp, llama_model::load_tensors, case LLM_ARCH_LLAMA: create_tensor with these ne; every tensor
            // of the file must be used (llama_model_loader::done_getting_tensors: "wrong number of tensors")
            var expected = new Dictionary<string, long[]>
            {
                ["token_embd.weight"] = [nEmbd, nVocab],
                ["output_norm.weight"] = [nEmbd],
                ["output.weight"] = [nEmbd, nVocab], // TENSOR_NOT_REQUIRED: absent means tied to token_embd
            };
            for (int l = 0; l < nLayer; l++)
            {
                expected[$"blk.{l}.attn_norm.weight"] = [nEmbd];
                expected[$"blk.{l}.attn_q.weight"] = [nEmbd, headDim * nHead];
                expected[$"blk.{l}.attn_k.weight"] = [nEmbd, headDim * nHeadKv];
                expected[$"blk.{l}.attn_v.weight"] = [nEmbd, headDim * nHeadKv];
                expected[$"blk.{l}.attn_output.weight"] = [headDim * nHead, nEmbd];
                expected[$"blk.{l}.ffn_norm.weight"] = [nEmbd];
                expected[$"blk.{l}.ffn_gate.weight"] = [nEmbd, nFf];
                expected[$"blk.{l}.ffn_down.weight"] = [nFf, nEmbd];
                expected[$"blk.{l}.ffn_up.weight"] = [nEmbd, nFf];
            }
            foreach (var t in file.Tensors)
            {
                if (!expected.TryGetValue(t.Name, out var ne))
                {
                    problems.Add($"tensor {t.Name}: not a tensor of LLM_ARCH_LLAMA (wrong number of tensors)");
                    continue;
                }
                if (!t.Dimensions.SequenceEqual(ne))
                    problems.Add($"tensor {t.Name}: ne [{string.Join(", ", t.Dimensions)}], expected [{string.Join(", ", ne)}] (n_vocab = {nVocab})");
                // ggml: a row holds whole blocks of its type
                if (t.Dimensions[0] % GgmlTypeTraits.BlockSize(t.Type) != 0)
                    problems.Add($"tensor {t.Name}: row of {t.Dimensions[0]} is not whole {t.Type} blocks");
            }
            foreach (string name in expected.Keys.Where(n => n != "output.weight" && file.FindTensor(n) is null))
                problems.Add($"tensor {name}: missing");
            return problems;
        }

        private static string[] CheckVocabulary(GgufFile file, List<string> problems, string probe)
        {
            var md = file.Metadata;
            if (!md.TryGetValue("tokenizer.ggml.model", out var modelValue) || modelValue.Type != GgufValueType.String)
            {
                problems.Add("tokenizer.ggml.model: missing or not a string");
                return [];
            }
            string model = modelValue.AsString();
            // "cannot find tokenizer vocab in model file" / "invalid gguf type for tokenizer.ggml.tokens"
            if (!md.TryGetValue("tokenizer.ggml.tokens", out var tokensValue) || tokensValue.Type != GgufValueType.Array || tokensValue.AsArray().ElementType != GgufValueType.String)
            {
                problems.Add("tokenizer.ggml.tokens: missing or not an array of strings");
                return [];
            }
            string[] tokens = tokensValue.AsArray().AsStrings();
            int n = tokens.Length;
            int[] types = new int[n];
            Array.Fill(types, 1);
            if (md.TryGetValue("tokenizer.ggml.scores", out var scores)
                && (scores.Type != GgufValueType.Array || scores.AsArray().ElementType is not (GgufValueType.Float32 or GgufValueType.Int32) || scores.AsArray().Count < n))
                problems.Add("tokenizer.ggml.scores: must be an array of float32 (or int32) with one score per token");
            if (md.TryGetValue("tokenizer.ggml.token_type", out var typeValue))
            {
                if (typeValue.Type != GgufValueType.Array || typeValue.AsArray().ElementType != GgufValueType.Int32 || typeValue.AsArray().Count < n)
                    problems.Add("tokenizer.ggml.token_type: must be an array of int32 with one type per token");
                else
                    types = typeValue.AsArray().AsInt32s();
            }
            // "duplicate token in vocabulary"; an empty token is renamed [EMPTY_i], so it could never match text
            var ids = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < n; i++)
            {
                if (tokens[i].Length == 0)
                    problems.Add($"token {i} is empty");
                else if (!ids.TryAdd(tokens[i], i))
                    problems.Add($"duplicate token in vocabulary: '{tokens[i]}' has ids {ids[tokens[i]]} and {i}");
            }
            // special ids are read with get_key into uint32 and must lie inside the vocabulary
            foreach (string key in new[] { "bos", "eos", "unknown", "padding", "seperator" }.Select(k => $"tokenizer.ggml.{k}_token_id"))
            {
                if (!md.TryGetValue(key, out var v))
                    continue;
                if (v.Type != GgufValueType.UInt32)
                    problems.Add($"{key}: has type {v.TypeName}, llama.cpp reads it as uint32");
                else if (v.AsInt64() >= n)
                    problems.Add($"{key}: {v.AsInt64()} is outside the vocabulary of {n}");
            }
            foreach (string key in new[] { "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix" })
                if (md.TryGetValue(key, out var v) && v.Type != GgufValueType.Bool)
                    problems.Add($"{key}: has type {v.TypeName}, llama.cpp reads it as bool");
            bool addSpacePrefix = model == "llama" && (!md.TryGetValue("tokenizer.ggml.add_space_prefix", out var asp) || asp.Type != GgufValueType.Bool || asp.AsBool());

            List<int> encoded;
            byte[] decoded;
            if (model == "llama")
            {
                float[] scoreValues = md.TryGetValue("tokenizer.ggml.scores", out var sv) && sv.Type == GgufValueType.Array && sv.AsArray().ElementType == GgufValueType.Float32
                    ? sv.AsArray().AsFloat32s() : new float[n];
                (encoded, decoded) = SentencePieceRoundTrip(tokens, types, scoreValues, ids, probe, addSpacePrefix, problems);
            }
            else if (model == "gpt2")
            {
                (encoded, decoded) = BytePairRoundTrip(file, tokens, types, ids, probe, problems);
            }
            else
            {
                problems.Add($"tokenizer.ggml.model '{model}': this check knows llama and gpt2");
                return tokens;
            }
            // what llama.cpp makes of the text is what Kiln's inference makes of it
            if (problems.Count == 0)
            {
                var kiln = Tokenizer.FromGguf(file);
                int[] kilnIds = kiln.Encode(probe, addSpecial: false);
                if (!kilnIds.SequenceEqual(encoded))
                    problems.Add($"Kiln tokenizes the probe as [{string.Join(",", kilnIds)}], llama.cpp's rules as [{string.Join(",", encoded)}]");
                string text = Encoding.UTF8.GetString(decoded);
                string expectedText = addSpacePrefix ? " " + probe : probe;
                if (text != expectedText)
                    problems.Add($"llama.cpp's detokenization gives '{text}', not the text");
                if (kiln.Decode(encoded.ToArray()) != probe)
                    problems.Add($"Kiln decodes the probe's tokens as '{kiln.Decode(encoded.ToArray())}'");
            }
            return tokens;
        }

        /// <summary>
        /// llm_tokenizer_spm_session::tokenize: spaces escaped to U+2581 (llama_escape_whitespace), the text split
        /// into UTF-8 characters, adjacent pairs merged while the pair is a token (highest score first), then
        /// resegment: a piece that is a token is emitted, otherwise its bytes through llama_vocab::byte_to_token,
        /// which tries "&lt;0xNN&gt;", then the byte as a one-character token, and throws std::out_of_range (uncaught
        /// by llama_tokenize) when neither exists. token_to_piece: a normal token's text with U+2581 turned back into
        /// spaces, a byte token its byte (token_to_byte), control and unused tokens nothing.
        /// </summary>
        private static (List<int>, byte[]) SentencePieceRoundTrip(string[] tokens, int[] types, float[] scores, Dictionary<string, int> ids, string text,
            bool addSpacePrefix, List<string> problems)
        {
            string escaped = ((addSpacePrefix ? " " : "") + text).Replace(' ', '\u2581');
            var pieces = new List<string>();
            foreach (var rune in escaped.EnumerateRunes())
                pieces.Add(rune.ToString());
            // the work queue pops the highest-scoring pair whose concatenation is a token, the leftmost on a tie
            while (true)
            {
                int best = -1;
                float bestScore = float.NegativeInfinity;
                for (int i = 0; i + 1 < pieces.Count; i++)
                    if (ids.TryGetValue(pieces[i] + pieces[i + 1], out int id) && (best < 0 || scores[id] > bestScore))
                        (best, bestScore) = (i, scores[id]);
                if (best < 0)
                    break;
                pieces[best] += pieces[best + 1];
                pieces.RemoveAt(best + 1);
            }
            var output = new List<int>();
            foreach (string piece in pieces)
            {
                if (ids.TryGetValue(piece, out int id))
                {
                    output.Add(id);
                    continue;
                }
                foreach (byte b in Encoding.UTF8.GetBytes(piece))
                {
                    if (ids.TryGetValue($"<0x{b:X2}>", out id) || ids.TryGetValue(((char)b).ToString(), out id) && b < 0x80)
                        output.Add(id);
                    else
                        problems.Add($"byte_to_token(0x{b:X2}) throws: no '<0x{b:X2}>' token and no one-byte token for '{piece}'");
                }
            }
            var bytes = new List<byte>();
            foreach (int id in output)
            {
                switch (types[id])
                {
                    case 6: // LLAMA_TOKEN_TYPE_BYTE → token_to_byte: strtol of the hex digits in "<0xNN>"
                        if (!(tokens[id].Length == 6 && tokens[id].StartsWith("<0x", StringComparison.Ordinal) && tokens[id][5] == '>'
                              && byte.TryParse(tokens[id].AsSpan(3, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out byte value)))
                        {
                            problems.Add($"byte token {id} '{tokens[id]}' is not spelled <0xNN>");
                            continue;
                        }
                        bytes.Add(value);
                        break;
                    case 1 or 4: // normal, user-defined
                        bytes.AddRange(Encoding.UTF8.GetBytes(tokens[id].Replace('\u2581', ' ')));
                        break;
                    default:
                        problems.Add($"the text tokenized to token {id} '{tokens[id]}' of type {types[id]}, which detokenizes to nothing");
                        break;
                }
            }
            return (output, [.. bytes]);
        }

        /// <summary>
        /// GPT-2's byte-to-unicode table (unicode.cpp, unicode_byte_to_utf8_map): printable Latin-1 bytes stand for
        /// themselves, the other 68 bytes for U+0100 onwards in byte order.
        /// </summary>
        private static Dictionary<byte, char> ByteToUnicode()
        {
            var map = new Dictionary<byte, char>();
            int next = 256;
            for (int b = 0; b < 256; b++)
                map[(byte)b] = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF ? (char)b : (char)next++;
            return map;
        }

        /// <summary>
        /// A "gpt2" vocabulary: merges required ("cannot find tokenizer merges in model file"), an array of strings
        /// split at the first space after position 0; the pre-tokenizer must be one llama.cpp knows ("unknown
        /// pre-tokenizer type"); normal tokens are spelled in the byte-to-unicode alphabet, which token_to_piece
        /// undoes code point by code point (llama_decode_text: unicode_utf8_to_byte, .at() throws on anything else);
        /// the 256 single-byte tokens exist so that byte_to_token and unmerged bytes always find a token. The probe is
        /// tokenized by Kiln (the merge order is checked by Kiln's own BPE tests against llama.cpp) and detokenized here
        /// by llama.cpp's rule.
        /// </summary>
        private static (List<int>, byte[]) BytePairRoundTrip(GgufFile file, string[] tokens, int[] types, Dictionary<string, int> ids, string text, List<string> problems)
        {
            var md = file.Metadata;
            if (!md.TryGetValue("tokenizer.ggml.merges", out var merges) || merges.Type != GgufValueType.Array || merges.AsArray().ElementType != GgufValueType.String)
            {
                problems.Add("tokenizer.ggml.merges: missing or not an array of strings");
                return ([], []);
            }
            string[] knownPre = ["default", "gpt-2", "llama3", "llama-bpe", "qwen2", "starcoder"];
            if (!md.TryGetValue("tokenizer.ggml.pre", out var pre) || pre.Type != GgufValueType.String || !knownPre.Contains(pre.AsString()))
                problems.Add("tokenizer.ggml.pre: missing (llama.cpp warns GENERATION QUALITY WILL BE DEGRADED) or not a pre-tokenizer this check knows");
            var byteToUnicode = ByteToUnicode();
            var unicodeToByte = byteToUnicode.ToDictionary(kv => kv.Value, kv => kv.Key);
            foreach (string m in merges.AsArray().AsStrings())
            {
                int space = m.IndexOf(' ', 1);
                if (space < 0 || !ids.ContainsKey(m[..space]) || !ids.ContainsKey(m[(space + 1)..]) || !ids.ContainsKey(m[..space] + m[(space + 1)..]))
                    problems.Add($"merge '{m}' does not join two tokens into a token");
            }
            for (int b = 0; b < 256; b++)
                if (!ids.ContainsKey(byteToUnicode[(byte)b].ToString()))
                    problems.Add($"no token for byte 0x{b:X2} ('{byteToUnicode[(byte)b]}')");
            for (int i = 0; i < tokens.Length; i++)
                if (types[i] == 1 && tokens[i].Any(c => !unicodeToByte.ContainsKey(c)))
                    problems.Add($"normal token {i} '{tokens[i]}' has a character outside the byte-to-unicode alphabet (llama_decode_text throws)");
            if (problems.Count > 0)
                return ([], []);
            var encoded = Tokenizer.FromGguf(file).Encode(text, addSpecial: false).ToList();
            var bytes = new List<byte>();
            foreach (int id in encoded)
                foreach (char c in tokens[id])
                    bytes.Add(unicodeToByte[c]);
            return (encoded, [.. bytes]);
        }

        /// <summary>llama-adapter.cpp, llama_adapter_lora_init_impl.</summary>
        public static List<string> CheckAdapter(string path, string basePath)
        {
            var problems = new List<string>();
            using var file = GgufFile.Open(path);
            using var baseFile = GgufFile.Open(basePath);
            var md = file.Metadata;
            string? Str(string key) => md.TryGetValue(key, out var v) && v.Type == GgufValueType.String ? v.AsString() : null;
            if (Str("general.type") != "adapter")
                problems.Add("general.type must be 'adapter'");
            if (Str("general.architecture") != baseFile.GetString("general.architecture"))
                problems.Add("model arch and LoRA arch mismatch");
            if (Str("adapter.type") != "lora")
                problems.Add("adapter.type must be 'lora'");
            // get_kv_f32 → gguf_get_val_f32, which asserts the type is float32
            if (md.TryGetValue("adapter.lora.alpha", out var alpha) && alpha.Type != GgufValueType.Float32)
                problems.Add($"adapter.lora.alpha: has type {alpha.TypeName}, gguf_get_val_f32 needs float32");
            var pairs = new Dictionary<string, (GgufTensorInfo? A, GgufTensorInfo? B)>();
            foreach (var t in file.Tensors)
            {
                if (t.Name.EndsWith(".lora_a", StringComparison.Ordinal))
                    pairs[t.Name[..^7]] = (t, pairs.GetValueOrDefault(t.Name[..^7]).B);
                else if (t.Name.EndsWith(".lora_b", StringComparison.Ordinal))
                    pairs[t.Name[..^7]] = (pairs.GetValueOrDefault(t.Name[..^7]).A, t);
                else if (!t.Name.EndsWith("_norm.weight", StringComparison.Ordinal))
                    problems.Add($"LoRA tensor '{t.Name}' has unexpected suffix");
            }
            foreach (var (name, (a, b)) in pairs)
            {
                if (a is null || b is null)
                {
                    problems.Add($"LoRA tensor pair for '{name}' is missing one component");
                    continue;
                }
                var w = baseFile.FindTensor(name);
                if (w is null)
                {
                    problems.Add($"LoRA tensor '{name}' does not exist in base model");
                    continue;
                }
                if (w.Dimensions[0] != a.Dimensions[0] || w.Dimensions[1] != b.Dimensions[1])
                    problems.Add($"tensor '{name}' has incorrect shape");
                if (a.Dimensions[1] != b.Dimensions[0])
                    problems.Add($"'{name}': lora_a tensor is not transposed");
            }
            return problems;
        }
    }
}
