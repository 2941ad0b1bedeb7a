from provenflow.ui.names import MAX_LENGTH, model_run_name, short_dataset, short_estimator


def test_names_tell_runs_apart():
    name = model_run_name("penguins-sex", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 200},
                          "penguins@f2ac45e0d1c3")  # fmt: skip
    assert name == "penguins-sex · RandomForest n_estimators=200 · penguins@f2ac45"
    other = model_run_name("penguins-sex", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 50},
                           "penguins@f2ac45e0d1c3")  # fmt: skip
    assert other != name


def test_parameters_sorted_nested_and_cut_never_the_data():
    params = {"b": 0.5, "a": {"x": 1, "y": "z"}, "long": "v" * 200}
    name = model_run_name("m", "mypkg.Model", params, "data@latest")
    assert name.startswith("m · Model a={x=1,y=z} b=0.5 long=vvv") and name.endswith("… · data@latest")
    assert len(name) <= MAX_LENGTH
    assert model_run_name("m", "sklearn.dummy.DummyClassifier", None, "d@1") == "m · Dummy · d@1"


def test_short_forms():
    assert short_estimator("sklearn.linear_model.Ridge") == "Ridge"
    assert short_estimator("x.Classifier") == "Classifier"
    assert short_dataset("penguins@latest") == "penguins@latest"
    assert short_dataset("penguins@0123456789ab") == "penguins@012345"


def test_data_runs_are_named_by_source_and_version():
    from provenflow.ui.names import data_run_name

    assert (
        data_run_name("penguins", "/data/penguins.csv", "99d47d0a1b2c") == "penguins · penguins.csv · @99d47d"
    )
    assert data_run_name("p", "s3://bucket/raw/p.parquet?versionId=3") == "p · p.parquet"
    assert data_run_name("p", "https://user@example.org/p.json") == "p · p.json"


def test_metric_tables_group_by_model_without_hashed_keys():
    from provenflow.tracking.prefect_context import artifact_key
    from provenflow.ui.names import metrics_key_parts

    keys = {
        artifact_key(*metrics_key_parts(kind, name))
        for kind, name in [("drift", "drift-penguins-sex@production"), ("drift", "drift-penguins-sex@3")]
    }
    assert keys == {"metrics-drift-penguins-sex"}  # before: one hashed key per alias or version
    assert (
        artifact_key(*metrics_key_parts("promotion", "promote-penguins-sex@3"))
        == "metrics-promotion-penguins-sex"
    )
