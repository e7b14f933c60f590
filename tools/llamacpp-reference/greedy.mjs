// Greedy generation with llama.cpp itself (the prebuilt CPU libraries node-llama-cpp ships), as an independent
// reference for Kiln's tests: does llama.cpp load a GGUF file Kiln wrote, and which tokens does it pick?
//
//   node greedy.mjs MODEL PROMPT COUNT [LORA...]
//
// PROMPT is comma-separated token ids ("1,450,2017"), taken as they are, or text, tokenized by llama.cpp with the
// BOS token when the model asks for one ("text:" forces text, for a prompt made of digits). COUNT tokens are
// generated at temperature 0 (argmax), end-of-text tokens included. Each LORA is an adapter GGUF applied at scale 1.
// Prints one JSON line {"prompt": [ids], "tokens": [ids], "text": "..."}; on failure a message on stderr and a
// non-zero exit (2: usage, 1: llama.cpp refused or failed).
import path from "node:path";
import fs from "node:fs";

const usage = "usage: node greedy.mjs MODEL PROMPT COUNT [LORA...]  (PROMPT: comma-separated token ids, or text)";

function fail(message, code = 1) {
    process.stderr.write(`greedy.mjs: error: ${message}\n`);
    process.exit(code);
}

const [modelArg, promptArg, countArg, ...loraArgs] = process.argv.slice(2);
if (modelArg === undefined || promptArg === undefined || countArg === undefined)
    fail(usage, 2);
const count = Number(countArg);
if (!Number.isInteger(count) || count < 1)
    fail(`COUNT '${countArg}' must be a whole number of at least 1`, 2);
// llama.cpp resolves relative paths against its own working directory, not the caller's: pass absolute ones.
const modelPath = path.resolve(modelArg);
const loraPaths = loraArgs.map(p => path.resolve(p));
for (const file of [modelPath, ...loraPaths])
    if (!fs.existsSync(file))
        fail(`file not found: ${file}`, 2);

let llamaModule;
try {
    llamaModule = await import("node-llama-cpp");
} catch (e) {
    fail(`node-llama-cpp is not installed (run: bash scripts/install-llamacpp-reference.sh): ${e.message}`);
}
const {getLlama, LlamaLogLevel} = llamaModule;

try {
    // build: "never" — use only the prebuilt binaries, never compile llama.cpp on the fly; gpu: false — the CPU
    // build, so that results do not depend on the machine's accelerator.
    const llama = await getLlama({build: "never", gpu: false, logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath});

    let prompt;
    if (/^\d+(,\d+)*$/.test(promptArg)) {
        prompt = promptArg.split(",").map(Number);
        let vocab = 0;
        for (const _ of model.iterateAllTokens())
            vocab++;
        const bad = prompt.find(id => id >= vocab);
        if (bad !== undefined)
            fail(`prompt token ${bad} is outside the model's vocabulary of ${vocab}`, 2);
    } else {
        const text = promptArg.startsWith("text:") ? promptArg.slice(5) : promptArg;
        prompt = model.tokenize(text, true);
        if (model.shouldPrependBosToken && model.tokens.bos !== null && prompt[0] !== model.tokens.bos)
            prompt = [model.tokens.bos, ...prompt];
    }
    if (prompt.length === 0)
        fail("the prompt has no tokens", 2);
    const needed = prompt.length + count;
    if (model.trainContextSize > 0 && needed > model.trainContextSize)
        fail(`prompt (${prompt.length}) + COUNT (${count}) tokens exceed the model's context of ${model.trainContextSize}`, 2);

    // One thread: with llama.cpp's default thread count a tiny model spends most of each token synchronizing
    // threads (seconds per token with a LoRA adapter on a 2-core machine); one thread takes milliseconds.
    const context = await model.createContext({
        contextSize: needed,
        threads: 1,
        ...(loraPaths.length > 0 ? {lora: {adapters: loraPaths.map(filePath => ({filePath}))}} : {}),
    });
    const tokens = [];
    for await (const token of context.getSequence().evaluate(prompt, {temperature: 0})) {
        tokens.push(token);
        if (tokens.length >= count)
            break;
    }
    process.stdout.write(JSON.stringify({prompt, tokens, text: model.detokenize(tokens)}) + "\n");
    await context.dispose();
    await model.dispose();
    await llama.dispose();
} catch (e) {
    fail(e?.message ?? String(e));
}
