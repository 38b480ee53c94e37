//! Every bad input gets a typed error that names the problem, and nothing is lost.

mod common;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use softmask::*;

fn device() -> Device {
    devices().remove(0).1
}

fn small_model(device: &Device) -> SoftMaskNet {
    SoftMaskNetConfig::new()
        .with_vocab_size(20)
        .with_embed_dim(4)
        .with_hidden(vec![3, 2])
        .init(device)
        .unwrap()
}

#[test]
fn empty_corpus() {
    let err = GroupedDataset::new(&[], &GroupConfig::new(4)).unwrap_err();
    assert!(matches!(err, Error::EmptyCorpus), "{err}");
    let tok = WordTokenizer::from_corpus(&["a"], UnknownWords::Error);
    let err = GroupedDataset::from_texts(&tok, &["  \n\t", ""], &GroupConfig::new(4)).unwrap_err();
    assert!(matches!(err, Error::EmptyCorpus), "{err}");
    assert_eq!(err.to_string(), "empty corpus: it holds no tokens");
}

#[test]
fn corpus_shorter_than_a_chunk() {
    let err = GroupedDataset::new(&[vec![1, 2], vec![3]], &GroupConfig::new(4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::CorpusTooShort {
                tokens: 3,
                max_seq_length: 4
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("3 tokens do not fill one chunk of 4")
    );
}

#[test]
fn zero_max_seq_length() {
    let err = GroupedDataset::new(&[vec![1]], &GroupConfig::new(0)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ZeroSize {
                what: "max_seq_length"
            }
        ),
        "{err}"
    );
}

#[test]
fn zero_batch_size() {
    let data = GroupedDataset::new(&[vec![1, 2, 3, 4]], &GroupConfig::new(2)).unwrap();
    let err = data.batches(0, Shuffle::None, 20, &device()).err().unwrap();
    assert!(
        matches!(err, Error::ZeroSize { what: "batch_size" }),
        "{err}"
    );
}

#[test]
fn empty_or_ragged_batch() {
    let err = LabelledBatch::from_ids(&[], &[], 20, &device()).unwrap_err();
    assert!(matches!(err, Error::BadBatch(_)), "{err}");
    let err =
        LabelledBatch::from_ids(&[vec![1, 2], vec![3]], &[0.0, 1.0], 20, &device()).unwrap_err();
    assert!(err.to_string().contains("example 1 has 1 tokens"), "{err}");
}

#[test]
fn unknown_word_without_reserved_id() {
    let tok = WordTokenizer::from_corpus(&["the food"], UnknownWords::Error);
    let err = tok.encode("the chef").unwrap_err();
    assert!(
        matches!(&err, Error::UnknownWord { word } if word == "chef"),
        "{err}"
    );
}

#[test]
fn token_id_at_or_above_the_vocabulary() {
    let device = device();
    // On the host, while batching.
    let data = GroupedDataset::new(&[vec![1, 2, 20, 3]], &GroupConfig::new(2)).unwrap();
    let first_bad = data
        .batches(2, Shuffle::None, 20, &device)
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(
            first_bad,
            Error::TokenOutOfVocab {
                id: 20,
                vocab_size: 20
            }
        ),
        "{first_bad}"
    );
    // On a tensor, before the forward pass.
    let model = small_model(&device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 19, 20], [1, 3]), &device);
    let err = model.forward(ids, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfVocab {
                id: 20,
                vocab_size: 20
            }
        ),
        "{err}"
    );
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![-1i64, 0], [1, 2]), &device);
    let err = model.forward_representation(ids, None).unwrap_err();
    assert!(
        matches!(err, Error::TokenOutOfVocab { id: -1, .. }),
        "{err}"
    );
}

#[test]
fn gates_of_the_wrong_shape() {
    let device = device();
    let model = small_model(&device);
    let other = GateLayout::new(vec![GateSpec::new("fc1", 1, 3), GateSpec::new("fc2", 1, 5)]);
    let ids = Tensor::<2, Int>::from_data([[1, 2]], &device);
    let err = model
        .forward(ids, Some(&Gates::ones(&other, &device)))
        .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what.contains("fc2")),
        "{err}"
    );
}

#[test]
fn invalid_model_config() {
    let device = device();
    let err = SoftMaskNetConfig::new()
        .with_dropout(1.0)
        .init(&device)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let err = SoftMaskNetConfig::new()
        .with_hidden(vec![])
        .init(&device)
        .unwrap_err();
    assert!(matches!(err, Error::ZeroSize { .. }), "{err}");
    let err = SoftMaskNetConfig::new()
        .with_hidden(vec![4, 0])
        .init(&device)
        .unwrap_err();
    assert!(matches!(err, Error::ZeroSize { .. }), "{err}");
}

#[test]
fn importance_whose_layer_sizes_do_not_match_the_model() {
    let device = device();
    let model = small_model(&device);
    let wrong = GateLayout::new(vec![GateSpec::new("fc1", 1, 3), GateSpec::new("fc2", 1, 4)]);
    let imp = Importance::zeros(&wrong).unwrap();
    let err = GradientSoftMasker::new(&imp, &model).unwrap_err();
    assert!(
        matches!(&err, Error::LayoutMismatch(m) if m.contains("fc2")),
        "{err}"
    );
    let err = UpdateSoftMasker::new(&imp, &model).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch(_)), "{err}");
    let err = Importance::new(&model.gate_layout(), vec![vec![0.0; 3]]).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch(_)), "{err}");
    let err = Importance::new(&model.gate_layout(), vec![vec![0.0; 3], vec![0.0; 3]]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let mut est =
        ImportanceEstimator::new(wrong, Accumulation::PerBatch, GradientSign::Signed).unwrap();
    let batch = LabelledBatch::from_ids(&[vec![1, 2]], &[1.0], 20, &device).unwrap();
    let proxy = KlToModel::new(small_model(&device));
    let err = est.step(&model, &batch, &proxy).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch(_)), "{err}");
    assert_eq!(est.tokens(), 0);
}

#[test]
fn importance_outside_zero_one_is_refused_for_masks() {
    let device = device();
    let model = small_model(&device);
    let imp = Importance::new(
        &model.gate_layout(),
        vec![vec![0.0, 1.5, 0.0], vec![0.0, 0.0]],
    )
    .unwrap();
    let err = GradientSoftMasker::new(&imp, &model).unwrap_err();
    assert!(err.to_string().contains("unit 1 is 1.5"), "{err}");
}

/// No `Importance` can hold a NaN or infinity, so none can be saved over a
/// good file, normalised, maxed (where NaN would silently drop) or masked with.
#[test]
fn non_finite_importance_is_refused_at_construction() {
    let device = device();
    let model = small_model(&device);
    let layout = model.gate_layout();
    let dir = temp_dir("nan-importance");
    let good = dir.join("good.safetensors");
    let imp = Importance::new(&layout, vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5]]).unwrap();
    imp.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (values, unit) in [
        (
            vec![vec![0.0, f32::NAN, 0.0], vec![0.0, 0.0]],
            "\"fc1\", unit 1",
        ),
        (
            vec![vec![0.0; 3], vec![0.0, f32::NEG_INFINITY]],
            "\"fc2\", unit 1",
        ),
        (
            vec![vec![0.0; 3], vec![f32::INFINITY, 0.0]],
            "\"fc2\", unit 0",
        ),
    ] {
        let err = Importance::new(&layout, values).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { what } if what.contains(unit)),
            "{err}"
        );
    }
    // The good file is untouched and still loads.
    assert_eq!(std::fs::read(&good).unwrap(), bytes);
    assert_eq!(Importance::load(&good).unwrap(), imp);
    // Maxing finite importances stays exact.
    let other = Importance::new(&layout, vec![vec![0.5, 0.0, 0.0], vec![0.0, 0.9]]).unwrap();
    let max = Importance::max(&[imp, other]).unwrap();
    assert_eq!(max.gates()[0].values, [0.5, 0.2, 0.3]);
    assert_eq!(max.gates()[1].values, [0.4, 0.9]);
    std::fs::remove_dir_all(dir).unwrap();
}

fn nan_gradient(model: &SoftMaskNet) -> GradientsParams {
    let fc1 = model.governed()[0];
    let inner = model.devices()[0].clone().inner();
    let mut grads = GradientsParams::new();
    let mut values = vec![0.5f32; 4 * 3];
    values[7] = f32::NAN;
    grads.register(
        fc1.param,
        Tensor::<2>::from_data(TensorData::new(values, [4, 3]), &inner),
    );
    grads
}

#[test]
fn non_finite_gradient_leaves_gradients_and_model_untouched() {
    let device = device();
    let mut model = small_model(&device);
    let imp = Importance::zeros(&model.gate_layout()).unwrap();
    let masker = GradientSoftMasker::new(&imp, &model).unwrap();
    let mut grads = nan_gradient(&model);
    let err = masker.apply(&model, &mut grads).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { what } if what.contains("hidden.0.weight")),
        "{err}"
    );
    let kept = grads
        .get::<2>(model.governed()[0].param)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(kept[0], 0.5);
    assert!(kept[7].is_nan());

    let dir = temp_dir("nan-step");
    model
        .save_safetensors(dir.join("before.safetensors"))
        .unwrap();
    for mode in [MaskMode::Gradient, MaskMode::Update] {
        let mut optim =
            SoftMaskedOptimizer::new(AdamConfig::new().init(), &imp, &model, mode).unwrap();
        let grads = nan_gradient(&model);
        let err = optim.step(0.1, &mut model, grads).unwrap_err();
        assert!(matches!(err, Error::NonFinite { .. }), "{mode:?}: {err}");
    }
    model
        .save_safetensors(dir.join("after.safetensors"))
        .unwrap();
    assert_eq!(
        read_tensors(&dir.join("before.safetensors")),
        read_tensors(&dir.join("after.safetensors"))
    );
    assert_eq!(model.devices().len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn estimation_needs_an_autodiff_device() {
    let inner = device().inner();
    let model = small_model(&inner);
    let proxy = KlToModel::new(small_model(&inner));
    let batch = LabelledBatch::from_ids(&[vec![1, 2]], &[1.0], 20, &inner).unwrap();
    let mut est = ImportanceEstimator::new(
        model.gate_layout(),
        Accumulation::PerBatch,
        GradientSign::Signed,
    )
    .unwrap();
    let err = est.step(&model, &batch, &proxy).unwrap_err();
    assert!(err.to_string().contains("autodiff"), "{err}");
}

/// Writes `bytes` to a file and returns its path.
fn file_with(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_or_corrupt_vocabulary_file() {
    let dir = temp_dir("bad-vocab");
    let tok = WordTokenizer::from_corpus(&["a b c"], UnknownWords::Reserve("<unk>".into()));
    let good = dir.join("vocab.json");
    tok.save(&good).unwrap();
    assert_eq!(WordTokenizer::load(&good).unwrap(), tok);
    let bytes = std::fs::read(&good).unwrap();
    let cases: [(&str, Vec<u8>); 5] = [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"\x00\x01not json".to_vec()),
        (
            "duplicate",
            br#"{"format":"softmask-word-vocabulary-v1","words":["a","a"],"unknown":null}"#
                .to_vec(),
        ),
        (
            "two words",
            br#"{"format":"softmask-word-vocabulary-v1","words":["a b"],"unknown":null}"#.to_vec(),
        ),
        (
            "bad unknown",
            br#"{"format":"softmask-word-vocabulary-v1","words":["a"],"unknown":"z"}"#.to_vec(),
        ),
    ];
    for (what, content) in cases {
        let err = WordTokenizer::load(file_with(&dir, what, &content)).unwrap_err();
        assert!(matches!(err, Error::CorruptFile { .. }), "{what}: {err}");
    }
    let err = WordTokenizer::load(dir.join("missing.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_or_corrupt_importance_file() {
    let dir = temp_dir("bad-importance");
    let layout = GateLayout::new(vec![
        GateSpec::new("fc1", 1, 3),
        GateSpec::new("heads", 2, 2),
    ]);
    let imp =
        Importance::new(&layout, vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6, 0.7]]).unwrap();
    let good = dir.join("imp.safetensors");
    imp.save(&good).unwrap();
    assert_eq!(Importance::load(&good).unwrap(), imp);
    let bytes = std::fs::read(&good).unwrap();
    let err = Importance::load(file_with(&dir, "trunc", &bytes[..bytes.len() - 3])).unwrap_err();
    assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
    let err = Importance::load(file_with(&dir, "garbage", b"12345678 nonsense")).unwrap_err();
    assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
    // A valid safetensors file that is not an importance file.
    let fx_weights = fixture_dir("notebook").join("model.safetensors");
    let err = Importance::load(fx_weights).unwrap_err();
    assert!(err.to_string().contains("softmask-importance-v1"), "{err}");
    // A NaN stored in the file (in place of 0.2).
    let at = bytes
        .windows(4)
        .position(|w| w == 0.2f32.to_le_bytes())
        .unwrap();
    let mut nan = bytes.clone();
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = Importance::load(file_with(&dir, "nan", &nan)).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { what } if what.contains("\"fc1\", unit 1")),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_corrupt_or_mismatched_weights_file() {
    let device = device();
    let dir = temp_dir("bad-weights");
    let mut model = small_model(&device);
    let good = dir.join("w.safetensors");
    model.save_safetensors(&good).unwrap();
    let before = read_tensors(&good);
    let bytes = std::fs::read(&good).unwrap();
    let err = model
        .load_safetensors(file_with(&dir, "trunc", &bytes[..bytes.len() - 1]))
        .unwrap_err();
    assert!(matches!(err, Error::CorruptFile { .. }), "{err}");
    // The notebook's weights do not fit a smaller network.
    let err = model
        .load_safetensors(fixture_dir("notebook").join("model.safetensors"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what.contains("word_embeddings.weight")),
        "{err}"
    );
    // A NaN weight; the head is read last, after every other tensor was accepted.
    let mut tensors = before.clone();
    tensors.get_mut("head.bias").unwrap().1[0] = f32::NAN;
    let nan = dir.join("nan.safetensors");
    write_tensors(&nan, &tensors);
    let err = model.load_safetensors(&nan).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { what } if what.contains("head.bias")),
        "{err}"
    );
    // Nothing was lost: the model still holds its weights.
    let again = dir.join("again.safetensors");
    model.save_safetensors(&again).unwrap();
    assert_eq!(read_tensors(&again), before);
    // A network with a third layer finds fc3 missing.
    let mut deeper = SoftMaskNetConfig::new()
        .with_vocab_size(20)
        .with_embed_dim(4)
        .with_hidden(vec![3, 2, 2])
        .init(&device)
        .unwrap();
    let err = deeper.load_safetensors(&good).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == "fc3.weight"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writing_into_a_missing_directory_fails_cleanly() {
    let dir = temp_dir("no-dir");
    let target = dir.join("absent").join("imp.safetensors");
    let layout = GateLayout::new(vec![GateSpec::new("fc1", 1, 2)]);
    let err = Importance::zeros(&layout)
        .unwrap()
        .save(&target)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path == &target),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn proxy_loss_that_ignores_the_gates_or_is_not_scalar() {
    let device = device();
    let model = small_model(&device);
    let batch = LabelledBatch::from_ids(&[vec![1, 2]], &[1.0], 20, &device).unwrap();
    let mut est = ImportanceEstimator::new(
        model.gate_layout(),
        Accumulation::PerBatch,
        GradientSign::Signed,
    )
    .unwrap();
    let constant = |_: &SoftMaskNet, _: &Gates, b: &LabelledBatch| -> Result<Tensor<1>> {
        Ok(b.labels.clone().sum())
    };
    let err = est.step(&model, &batch, &constant).unwrap_err();
    assert!(matches!(err, Error::MissingGradient(_)), "{err}");
    let only_fc1 = |m: &SoftMaskNet, g: &Gates, b: &LabelledBatch| -> Result<Tensor<1>> {
        let fc1_only = Gates::from_tensors(
            vec![
                g.tensors()[0].clone(),
                Tensor::ones([1, 2], &b.labels.device()),
            ],
            &m.gate_layout(),
        )?;
        Ok(m.forward(b.input_ids.clone(), Some(&fc1_only))?.sum())
    };
    let err = est.step(&model, &batch, &only_fc1).unwrap_err();
    assert!(
        matches!(&err, Error::MissingGradient(m) if m.contains("fc2")),
        "{err}"
    );
    let vector = |m: &SoftMaskNet, g: &Gates, b: &LabelledBatch| -> Result<Tensor<1>> {
        Ok(m.forward(b.input_ids.clone(), Some(g))?
            .reshape([1])
            .repeat_dim(0, 2))
    };
    let err = est.step(&model, &batch, &vector).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert_eq!(est.tokens(), 0, "nothing accumulated");
}

#[test]
fn loss_targets_of_another_shape() {
    let device = device();
    let probs = Tensor::<2>::from_data([[0.5], [0.25]], &device);
    let err =
        binary_cross_entropy(probs.clone(), Tensor::<2>::from_data([[1.0]], &device)).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let loss =
        binary_cross_entropy(probs, Tensor::<2>::from_data([[1.0], [0.0]], &device)).unwrap();
    let expected = -(0.5f32.ln() + 0.75f32.ln()) / 2.0;
    assert!((loss.into_scalar::<f32>() - expected).abs() < 1e-6);
}

#[test]
fn sizes_past_the_documented_limits_are_refused_before_allocating() {
    let device = device();
    // Before: an abort on a 4 TB allocation, and a "capacity overflow" panic.
    for len in [1_000_000_000_000usize, usize::MAX] {
        let config = GroupConfig::new(len).with_pad_id(Some(0));
        let err = GroupedDataset::new(&[vec![1, 2, 3]], &config).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains(&format!("max_seq_length {len}"))
                && m.contains("MAX_SEQ_LENGTH")),
            "{err}"
        );
    }
    let at_limit = GroupConfig::new(softmask::limits::MAX_SEQ_LENGTH).with_pad_id(Some(0));
    let data = GroupedDataset::new(&[vec![1, 2, 3]], &at_limit).unwrap();
    assert_eq!(data.examples()[0].real_len, 3);

    for (config, field) in [
        (
            SoftMaskNetConfig::new().with_vocab_size(1 << 40),
            "vocab_size",
        ),
        (
            SoftMaskNetConfig::new().with_embed_dim(1 << 30),
            "would hold",
        ),
        (
            SoftMaskNetConfig::new().with_hidden(vec![usize::MAX, 2]),
            "more values than a machine can address",
        ),
        (
            SoftMaskNetConfig::new().with_hidden(vec![1; 2000]),
            "2000 hidden layers",
        ),
    ] {
        let err = config.init(&device).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains(field)),
            "{field}: {err}"
        );
    }
    // A gate layout too large to hold.
    let huge = GateLayout::new(vec![GateSpec::new("fc1", 1 << 20, 1 << 20)]);
    assert!(matches!(
        ImportanceEstimator::new(huge.clone(), Accumulation::PerBatch, GradientSign::Signed),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Importance::zeros(&huge),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn token_ids_past_what_burn_can_hold_are_refused_on_the_host() {
    let device = device();
    let big = 1u32 << 31;
    // Before: a panic in burn's i64 -> i32 conversion, whatever the vocabulary.
    let err = LabelledBatch::from_ids(&[vec![1, big]], &[1.0], usize::MAX, &device).unwrap_err();
    assert!(
        matches!(err, Error::TokenOutOfVocab { id, vocab_size }
            if id == i64::from(big) && vocab_size == softmask::limits::MAX_TOKEN_ID as usize + 1),
        "{err}"
    );
    let data = GroupedDataset::new(&[vec![1, 2, big, 3]], &GroupConfig::new(2)).unwrap();
    let err = data
        .batches(2, Shuffle::None, 1 << 40, &device)
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(matches!(err, Error::TokenOutOfVocab { .. }), "{err}");
    let rows = [vec![2u32, big]];
    let mask = [vec![1u32, 1]];
    let err = BertBatch::from_rows(&rows, &mask, None, None, 1 << 40, &device).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfVocab { .. }), "{err}");
    let types = [vec![0u32, big]];
    let ok_rows = [vec![2u32, 3]];
    let err = BertBatch::from_rows(&ok_rows, &mask, Some(&types), None, 30, &device).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfVocab { .. }), "{err}");
    let labels = [vec![-100i64, i64::from(big)]];
    let err =
        BertBatch::from_rows(&ok_rows, &mask, None, Some(&labels), 1 << 40, &device).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfVocab { .. }), "{err}");
    // The largest id that fits is accepted.
    let top = softmask::limits::MAX_TOKEN_ID;
    let batch = LabelledBatch::from_ids(&[vec![top]], &[1.0], usize::MAX, &device).unwrap();
    let ids = batch
        .input_ids
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(ids, [i64::from(top)]);
}

#[test]
fn the_token_id_check_is_public_for_users_own_models() {
    let device = device();
    let ids = Tensor::<2, Int>::from_data([[0, 5, 9]], &device);
    assert!(check_token_ids(&ids, 10).is_ok());
    assert!(matches!(
        check_token_ids(&ids, 9),
        Err(Error::TokenOutOfVocab {
            id: 9,
            vocab_size: 9
        })
    ));
    let ids = Tensor::<2, Int>::from_data([[3, -2]], &device);
    assert!(matches!(
        check_token_ids(&ids, 10),
        Err(Error::TokenOutOfVocab { id: -2, .. })
    ));
}

#[test]
fn layout_messages_show_shapes_and_name_the_right_parties() {
    let device = device();
    let model = small_model(&device);
    // Same names, other shapes: the message must tell them apart.
    let other = GateLayout::new(vec![GateSpec::new("fc1", 1, 4), GateSpec::new("fc2", 1, 2)]);
    let mut est =
        ImportanceEstimator::new(other.clone(), Accumulation::PerBatch, GradientSign::Signed)
            .unwrap();
    let batch = LabelledBatch::from_ids(&[vec![1, 2]], &[1.0], 20, &device).unwrap();
    let proxy = KlToModel::new(small_model(&device));
    let err = est.step(&model, &batch, &proxy).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layout mismatch: the model's gates [fc1 [1, 3], fc2 [1, 2]] are not the \
         estimator's [fc1 [1, 4], fc2 [1, 2]]"
    );
    // Importance::max compares importances with each other, not with a model.
    let a = Importance::zeros(&model.gate_layout()).unwrap();
    let b = Importance::zeros(&other).unwrap();
    let err = Importance::max(&[a, b]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layout mismatch: importance 1: importance gates [fc1 [1, 4], fc2 [1, 2]] do not \
         match the first importance's [fc1 [1, 3], fc2 [1, 2]]"
    );
}

/// Writes a safetensors file with the importance format's metadata.
fn importance_file(
    dir: &std::path::Path,
    name: &str,
    gates: &str,
    tensors: &[(&str, safetensors::Dtype, Vec<u8>, Vec<usize>)],
) -> std::path::PathBuf {
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, dtype, bytes, shape)| {
            (
                *n,
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "softmask-importance-v1".to_string()),
        ("gates".to_string(), gates.to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).unwrap();
    file_with(dir, name, &bytes)
}

#[test]
fn importance_files_with_an_integer_tensor_or_a_gate_listed_twice() {
    let dir = temp_dir("importance-messages");
    let f32s: Vec<u8> = [0.1f32, 0.2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let i64s: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = importance_file(
        &dir,
        "int",
        "fc1\nfc2",
        &[
            ("fc1", safetensors::Dtype::F32, f32s.clone(), vec![1, 2]),
            ("fc2", safetensors::Dtype::I64, i64s, vec![1, 2]),
        ],
    );
    let err = Importance::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptFile { reason, .. }
            if reason == "tensor \"fc2\" has dtype I64, not a float type"),
        "{err}"
    );
    let path = importance_file(
        &dir,
        "twice",
        "fc1\nfc1",
        &[
            ("fc1", safetensors::Dtype::F32, f32s.clone(), vec![1, 2]),
            ("fc2", safetensors::Dtype::F32, f32s, vec![1, 2]),
        ],
    );
    let err = Importance::load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptFile { reason, .. }
            if reason == "gate \"fc1\" is listed twice in the metadata (entries 1 and 2)"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
