using RealtimeAssistant.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace RealtimeAssistant.Model;

/// <summary>
/// CLIP or SigLIP vision transformer, with HF's module names (vision_model.embeddings…,
/// vision_model.encoder.layers.N…), so checkpoint names line up with no renaming table.
/// </summary>
public sealed class VisionTower : nn.Module<Tensor, Tensor>
{
    public readonly VisionModel vision_model;
    readonly LlavaConfig _cfg;

    public VisionTower(LlavaConfig cfg, TensorSpec spec) : base(nameof(VisionTower))
    {
        _cfg = cfg;
        vision_model = new VisionModel(cfg.Vision, spec);
        RegisterComponents();
    }

    /// <summary>Hidden-state index (0 = embeddings) for a possibly negative feature layer.</summary>
    int Resolve(int layer) => layer < 0 ? _cfg.Vision.NumHiddenLayers + 1 + layer : layer;

    /// <summary>pixels [B,3,H,W] → selected features [B, tokens, D·layers], as LLaVA takes them.</summary>
    public override Tensor forward(Tensor pixels) => Features(pixels).Features;

    /// <summary>The selected features, and the deepest computed layer's patch states (no CLS) for training probes.</summary>
    public (Tensor Features, Tensor LastPatches) Features(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        var wanted = _cfg.VisionFeatureLayers.Select(Resolve).ToArray();
        var states = vision_model.HiddenStates(pixels, wanted.Max());
        var feats = torch.cat(wanted.Select(i => states[i]).ToArray(), -1);
        bool hasCls = !_cfg.Vision.IsSiglip;
        // "default" drops the first token: CLIP's class token; transformers drops SigLIP's first patch too.
        if (_cfg.VisionFeatureSelectStrategy == "default")
            feats = feats[.., 1..];
        var last = hasCls ? states[^1][.., 1..] : states[^1];
        return (feats.MoveToOuterDisposeScope(), last.MoveToOuterDisposeScope());
    }
}

public sealed class VisionModel : nn.Module
{
    public readonly VisionEmbeddings embeddings;
    public readonly LayerNorm? pre_layrnorm; // sic: HF's CLIP spells it this way
    public readonly VisionEncoder encoder;
    public readonly LayerNorm post_layernorm;

    public VisionModel(VisionConfig c, TensorSpec spec) : base(nameof(VisionModel))
    {
        embeddings = new VisionEmbeddings(c, spec);
        if (!c.IsSiglip) pre_layrnorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, spec);
        encoder = new VisionEncoder(c, spec);
        post_layernorm = new LayerNorm(c.HiddenSize, c.LayerNormEps, spec);
        RegisterComponents();
    }

    /// <summary>Hidden states 0..upTo (0 = embeddings); layers past upTo are never run.</summary>
    public List<Tensor> HiddenStates(Tensor pixels, int upTo)
    {
        var h = embeddings.forward(pixels);
        if (pre_layrnorm != null) h = pre_layrnorm.forward(h);
        var states = new List<Tensor> { h };
        for (int i = 0; i < upTo; i++)
        {
            h = ((VisionEncoderLayer)encoder.layers[i]).forward(h);
            states.Add(h);
        }
        return states;
    }
}

public sealed class VisionEmbeddings : nn.Module<Tensor, Tensor>
{
    public readonly PatchEmbedding patch_embedding;
    public readonly Parameter? class_embedding;
    public readonly Embedding position_embedding;

    public VisionEmbeddings(VisionConfig c, TensorSpec spec) : base(nameof(VisionEmbeddings))
    {
        patch_embedding = new PatchEmbedding(c, spec);
        if (!c.IsSiglip) class_embedding = spec.Param(c.HiddenSize);
        position_embedding = new Embedding(c.NumPatches + (c.IsSiglip ? 0 : 1), c.HiddenSize, spec);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels)
    {
        var x = patch_embedding.forward(pixels);               // [B, D, g, g]
        x = x.flatten(2).transpose(1, 2);                      // [B, g·g, D]
        if (class_embedding is not null)
            x = torch.cat(new[] { class_embedding.expand(x.size(0), 1, -1), x }, 1);
        return x.Plus(position_embedding.weight.unsqueeze(0));
    }
}

public sealed class PatchEmbedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    public readonly Parameter? bias;
    readonly long _patch;
    public PatchEmbedding(VisionConfig c, TensorSpec spec) : base(nameof(PatchEmbedding))
    {
        weight = spec.Param(c.HiddenSize, c.NumChannels, c.PatchSize, c.PatchSize);
        if (c.IsSiglip) bias = spec.Param(c.HiddenSize);
        _patch = c.PatchSize;
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => F.conv2d(x, weight, bias, strides: new[] { _patch, _patch });
}

public sealed class VisionEncoder : nn.Module
{
    public readonly ModuleList<nn.Module> layers = new();
    public VisionEncoder(VisionConfig c, TensorSpec spec) : base(nameof(VisionEncoder))
    {
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new VisionEncoderLayer(c, spec));
        RegisterComponents();
    }
}

public sealed class VisionEncoderLayer : nn.Module<Tensor, Tensor>
{
    public readonly LayerNorm layer_norm1, layer_norm2;
    public readonly VisionAttention self_attn;
    public readonly VisionMlp mlp;
    public VisionEncoderLayer(VisionConfig c, TensorSpec spec) : base(nameof(VisionEncoderLayer))
    {
        layer_norm1 = new LayerNorm(c.HiddenSize, c.LayerNormEps, spec);
        self_attn = new VisionAttention(c, spec);
        layer_norm2 = new LayerNorm(c.HiddenSize, c.LayerNormEps, spec);
        mlp = new VisionMlp(c, spec);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => LayerScope.Run(() =>
    {
        x = x.Plus(self_attn.forward(layer_norm1.forward(x)));
        return x.Plus(mlp.forward(layer_norm2.forward(x)));
    });
}

public sealed class VisionAttention : nn.Module<Tensor, Tensor>
{
    public readonly Linear q_proj, k_proj, v_proj, out_proj;
    readonly int _heads, _headDim;
    public VisionAttention(VisionConfig c, TensorSpec spec) : base(nameof(VisionAttention))
    {
        q_proj = new Linear(c.HiddenSize, c.HiddenSize, true, spec);
        k_proj = new Linear(c.HiddenSize, c.HiddenSize, true, spec);
        v_proj = new Linear(c.HiddenSize, c.HiddenSize, true, spec);
        out_proj = new Linear(c.HiddenSize, c.HiddenSize, true, spec);
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        long b = x.size(0), t = x.size(1);
        Tensor Split(Tensor y) => y.view(b, t, _heads, _headDim).transpose(1, 2);
        var o = F.scaled_dot_product_attention(Split(q_proj.forward(x)), Split(k_proj.forward(x)), Split(v_proj.forward(x)));
        return out_proj.forward(o.transpose(1, 2).reshape(b, t, -1));
    }
}

public sealed class VisionMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear fc1, fc2;
    readonly Func<Tensor, Tensor> _act;
    public VisionMlp(VisionConfig c, TensorSpec spec) : base(nameof(VisionMlp))
    {
        fc1 = new Linear(c.HiddenSize, c.IntermediateSize, true, spec);
        fc2 = new Linear(c.IntermediateSize, c.HiddenSize, true, spec);
        _act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => fc2.forward(_act(fc1.forward(x)));
}

/// <summary>LLaVA's 2-layer MLP projector: vision features → the decoder's embedding space.</summary>
public sealed class Projector : nn.Module<Tensor, Tensor>
{
    public readonly Linear linear_1, linear_2;
    readonly Func<Tensor, Tensor> _act;
    public Projector(LlavaConfig c, TensorSpec spec) : base(nameof(Projector))
    {
        linear_1 = new Linear(c.Vision.HiddenSize * c.VisionFeatureLayers.Length, c.Text.HiddenSize, c.ProjectorBias, spec);
        linear_2 = new Linear(c.Text.HiddenSize, c.Text.HiddenSize, c.ProjectorBias, spec);
        _act = Activations.Get(c.ProjectorHiddenAct);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => linear_2.forward(_act(linear_1.forward(x)));
}
